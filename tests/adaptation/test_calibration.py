"""Temperature scaling (Guo et al. 2017) on a constructed over-confident model, the ECE that measures
it, and the temperature folded into the head so that every serving path gives calibrated scores."""

import pytest
import torch
from torch import nn
from transformers import AutoTokenizer

from app.adaptation import TaskData, adapt, load_classifier, predict_proba, save_classifier
from app.adaptation.calibration import (
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    temperature_refusal,
)
from app.adaptation.inference import predict_logits
from app.adaptation.single import evaluate
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment


def over_confident(n: int = 4000, classes: int = 3, sharpness: float = 4.0, seed: int = 0):
    """Labels drawn from softmax(z), logits reported as sharpness * z: a model whose scores are right
    in order but far too sure, so the temperature that calibrates it is `sharpness`."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(n, classes, generator=generator) * 1.5
    targets = torch.multinomial(true_logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
    return true_logits * sharpness, targets


def test_the_fitted_temperature_undoes_the_over_confidence_and_lowers_the_ece():
    logits, targets = over_confident(sharpness=4.0)
    temperature = fit_temperature(logits, targets)
    assert temperature == pytest.approx(4.0, rel=0.15)
    before = expected_calibration_error(logits.softmax(dim=-1), targets)
    after = expected_calibration_error((logits / temperature).softmax(dim=-1), targets)
    assert before > 0.15  # badly calibrated: confidence far above accuracy
    assert after < 0.04 and after < before / 4


def test_a_calibrated_model_keeps_a_temperature_near_one():
    logits, targets = over_confident(sharpness=1.0, seed=1)
    assert fit_temperature(logits, targets) == pytest.approx(1.0, abs=0.15)


def test_temperature_scaling_never_changes_the_argmax():
    logits, targets = over_confident(sharpness=3.0, seed=2)
    temperature = fit_temperature(logits, targets)
    assert torch.equal((logits / temperature).argmax(dim=-1), logits.argmax(dim=-1))


def test_rows_without_errors_get_no_temperature():
    # Every prediction right: the NLL falls without bound as T -> 0, so no temperature is trusted.
    logits = torch.randn(200, 2, generator=torch.Generator().manual_seed(3))
    assert temperature_refusal(logits, logits.argmax(dim=-1)) is not None


def test_a_temperature_that_does_not_hold_on_the_other_half_is_refused():
    # A 4000-row over-confident model's temperature holds on either half. 400 confident rows whose
    # 12 errors all sit in the first half (the even rows): fitted there, T softens everything, which
    # the error-free second half's NLL does not bear out; fitted on the second half, T sharpens,
    # which the first half's errors punish.
    logits, targets = over_confident(sharpness=4.0)
    assert temperature_refusal(logits, targets) is None
    few = torch.tensor([[6.0, 0.0]] * 400)
    labels = torch.zeros(400, dtype=torch.long)
    labels[0:24:2] = 1  # 12 confident errors, in the first half only
    assert "other half" in temperature_refusal(few, labels)


def test_a_temperature_the_rows_cannot_tell_from_one_is_refused():
    # A model only slightly over-confident (true T 1.1), seen through 200 rows: the fit lands near
    # 1.1, but the likelihood-ratio test cannot tell it from 1. 4000 rows of a clearly over-confident
    # model pass it.
    logits, targets = over_confident(n=200, sharpness=1.1, seed=5)
    assert "not distinguishable from 1" in temperature_refusal(logits, targets)
    logits, targets = over_confident(sharpness=4.0)
    assert temperature_refusal(logits, targets) is None


def test_a_model_with_too_few_validation_errors_gets_no_temperature():
    # An over-confident model, but only 9 of its validation rows are wrong: the fit would follow
    # those 9 rows, so it is refused, and the message says how many there were.
    logits, targets = over_confident(sharpness=4.0)
    wrong = (logits.argmax(dim=-1) != targets).nonzero().squeeze(1)
    right = (logits.argmax(dim=-1) == targets).nonzero().squeeze(1)
    rows = torch.cat([wrong[:9], right[:300]])
    assert "9 errors" in temperature_refusal(logits[rows], targets[rows])
    rows = torch.cat([wrong[:30], right[:300]])
    assert temperature_refusal(logits[rows], targets[rows]) is None


def test_a_refused_temperature_leaves_the_scores_as_they_are(tiny_model_dir):
    from app.adaptation.calibration import settle_on_validation

    class Separable:
        multi_label = False

        def targets(self, gold):
            return [0 if g == "negative" else 1 for g in gold]

    data = sentiment(40, seed=21)
    spec = job()
    model = classifier(tiny_model_dir, spec)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    gold = [["negative", "positive"][i] for i in predict_logits(model, tokenizer, data.texts, 64).argmax(-1).tolist()]
    fitted = settle_on_validation(spec, model, tokenizer, Separable(), type(data)(data.texts, gold), None)
    assert fitted["applied"] is False and fitted["temperature"] == 1.0 and "0 errors" in fitted["not_applied_because"]
    assert fitted["validation_ece_after"] == fitted["validation_ece_before"]


def test_ece_by_hand():
    # Two bins used: confidence 0.9 (2 rows, 1 right: |0.5 - 0.9| = 0.4) and 0.6 (2 rows, both right: 0.4).
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    targets = torch.tensor([0, 1, 1, 1])
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


@pytest.mark.parametrize(
    "head",
    [nn.Sequential(nn.Dropout(0.1), nn.Linear(8, 3)), nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))],
)
def test_folding_divides_the_heads_output_by_the_temperature(head):
    head.eval()
    x = torch.randn(10, 8)
    before = head(x).detach()
    fold_temperature(head, 2.5)
    assert torch.allclose(head(x), before / 2.5, atol=1e-6)


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    data = TaskData(sentiment(240, seed=11), None, sentiment(120, seed=12))
    spec = job(training={"epochs": 4, "learning_rate": 3e-3}, data={"validation_fraction": 0.25})
    return spec, data, adapt(spec, data, tiny_model_dir)


def test_a_job_fits_its_temperature_on_validation_and_reports_ece_before_and_after(trained):
    spec, data, result = trained
    calibration = result.metrics["calibration"]
    assert calibration["method"] == "temperature_scaling" and calibration["fitted_on"] == "validation"
    assert calibration["validation_examples"] == 60
    assert calibration["validation_ece_after"] <= calibration["validation_ece_before"]
    test = result.metrics["test"]
    assert {"ece", "ece_uncalibrated"} <= set(test)


def test_the_saved_model_serves_the_calibrated_probabilities(trained, tmp_path):
    spec, data, result = trained
    temperature = result.metrics["calibration"]["temperature"]
    texts = data.test.texts[:20]
    served = predict_proba(result.model, result.tokenizer, texts, spec.training.max_length)
    save_classifier(result.model, result.tokenizer, result.labels, spec.model, spec.training.max_length, tmp_path)
    loaded = load_classifier(tmp_path)
    assert torch.allclose(loaded.probabilities(texts), served, atol=1e-5)
    # ... which are the uncalibrated logits divided by the temperature: the head holds it.
    logits = predict_logits(result.model, result.tokenizer, texts, spec.training.max_length)
    uncalibrated = logits * temperature
    assert torch.allclose((uncalibrated / temperature).softmax(dim=-1), served, atol=1e-5)


def test_calibrate_false_keeps_the_raw_scores(tiny_model_dir):
    data = TaskData(sentiment(120, seed=11), sentiment(40, seed=13))
    result = adapt(job(training={"epochs": 1, "calibrate": False}), data, tiny_model_dir)
    assert result.metrics["calibration"] is None
    report = evaluate(result.model, result.tokenizer, data.validation, _task(result.labels), 64)
    assert "ece" in report and "ece_uncalibrated" not in report


def _task(labels):
    from app.adaptation.tasks import TASKS

    return TASKS.get("single_label")(labels, None)
