import torch

from app.adaptation import TaskData, adapt
from app.adaptation.data import Batches, encode
from app.adaptation.features import reduce_all
from app.adaptation.heads import HEADS
from app.adaptation.pooling import POOLINGS
from app.schemas.spec import ModelConfig
from tests.adaptation.helpers import classifier, job
from tests.adaptation.test_groups_and_unfreezing import _tokenizer
from tests.utils.data import sentiment


def hidden_and_mask():
    last = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # third token is padding
    first = torch.tensor([[[5.0, 5.0], [7.0, 9.0], [50.0, 50.0]]])
    mask = torch.tensor([[1, 1, 0]])
    return (first, last), mask


def test_mean_ignores_padding():
    hidden, mask = hidden_and_mask()
    assert torch.equal(POOLINGS.get("mean")(2, 1)(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_max_ignores_padding():
    hidden, mask = hidden_and_mask()
    assert torch.equal(POOLINGS.get("max")(2, 1)(hidden, mask), torch.tensor([[3.0, 4.0]]))


def test_cls_takes_the_first_token_of_the_last_layer():
    hidden, mask = hidden_and_mask()
    assert torch.equal(POOLINGS.get("cls")(2, 1)(hidden, mask), torch.tensor([[1.0, 2.0]]))


def test_scalar_mix_is_gamma_times_softmax_weighted_layer_means():
    hidden, mask = hidden_and_mask()
    mix = POOLINGS.get("scalar_mix")(2, 1)
    assert torch.allclose(mix(hidden, mask), torch.tensor([[(6 + 2) / 2, (7 + 3) / 2]]))  # uniform at start
    with torch.no_grad():
        mix.scalars.copy_(torch.tensor([0.0, 1.0]))
        mix.gamma.fill_(2.0)
    w = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    expected = 2.0 * (w[0] * torch.tensor([6.0, 7.0]) + w[1] * torch.tensor([2.0, 3.0]))
    assert torch.allclose(mix(hidden, mask), expected.unsqueeze(0))
    assert [n for n, _ in mix.named_parameters()] == ["scalars", "gamma"]


def test_mlp_head_has_a_hidden_layer():
    head = HEADS.get("mlp")(32, 3, ModelConfig(head="mlp", head_hidden=16))
    assert head(torch.zeros(5, 32)).shape == (5, 3)
    assert [p.shape for p in head.parameters()] == [(16, 32), (16,), (3, 16), (3,)]


def test_cached_features_give_the_same_logits_as_running_the_encoder(tiny_model_dir):
    model = classifier(tiny_model_dir, job(model={"pooling": "scalar_mix"}), 2)
    model.freeze_encoder()
    model.eval()
    tokenizer = _tokenizer(tiny_model_dir)
    texts = sentiment(40).texts
    batches = Batches(encode(tokenizer, texts, 64), None, 16, tokenizer.pad_token_id)
    cached = reduce_all(model, batches)
    direct = torch.cat([model(b.input_ids, b.attention_mask) for b in batches.by_length()])
    order = [i for b in batches.by_length() for i in b.indices]
    assert torch.allclose(model.from_reduced(cached[order]), direct, atol=1e-5)


def test_feature_extraction_trains_on_cached_features_and_learns(tiny_model_dir):
    spec = job(recipe="feature_extraction", training={"epochs": 30, "learning_rate": 1e-2})
    result = adapt(spec, TaskData(sentiment(200), sentiment(60, seed=2)), tiny_model_dir)
    assert result.metrics["features_cached"] is True
    assert result.metrics["accuracy"] >= 0.7  # a random 32-wide encoder: the head still finds the cue words
