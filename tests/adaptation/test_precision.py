"""`training.precision`: the forward pass runs in bf16 under autocast; weights, optimizer state and the
loss stay fp32."""

import pytest
import torch

from app.adaptation import TaskData, adapt
from app.adaptation.precision import bf16_is_native, resolve
from tests.adaptation.helpers import job
from tests.utils.data import sentiment

CPU = torch.device("cpu")


def test_auto_is_bf16_exactly_where_the_hardware_has_it():
    assert resolve("fp32", CPU) == torch.float32
    assert resolve("bf16", CPU) == torch.bfloat16
    assert resolve("auto", CPU) == (torch.bfloat16 if bf16_is_native(CPU) else torch.float32)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_matrix_products_run_in_the_jobs_precision_and_the_weights_stay_fp32(tiny_model_dir, precision):
    seen: set[torch.dtype] = set()
    original = torch.nn.Linear.forward

    def recording(self, x):
        out = original(self, x)
        if torch.is_grad_enabled():  # training steps, not evaluation
            seen.add(out.dtype)
        return out

    spec = job(training={"epochs": 1, "precision": precision})
    torch.nn.Linear.forward = recording
    try:
        result = adapt(spec, TaskData(sentiment(32), sentiment(8, seed=1)), tiny_model_dir)
    finally:
        torch.nn.Linear.forward = original
    assert seen == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    assert result.metrics["precision"] == precision
