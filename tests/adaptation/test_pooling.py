import torch

from app.adaptation.pooling import POOLINGS


def hidden_and_mask():
    last = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # third token is padding
    mask = torch.tensor([[1, 1, 0]])
    return (torch.zeros_like(last), last), mask


def test_mean_ignores_padding():
    hidden, mask = hidden_and_mask()
    assert torch.equal(POOLINGS.get("mean")(2, 1)(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_max_ignores_padding():
    hidden, mask = hidden_and_mask()
    assert torch.equal(POOLINGS.get("max")(2, 1)(hidden, mask), torch.tensor([[3.0, 4.0]]))


def test_cls_takes_the_first_token_of_the_last_layer():
    hidden, mask = hidden_and_mask()
    assert torch.equal(POOLINGS.get("cls")(2, 1)(hidden, mask), torch.tensor([[1.0, 2.0]]))
