"""Every benchmark script still runs, at its --smoke size (seconds of work, numbers meaningless).

No pass/fail on speed here: the benchmarks' numbers are for the README table, taken on a quiet
machine; CI only keeps the scripts working and their result files complete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets" / "trec"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def datasets() -> None:
    """The benchmarks read ../shared/datasets; a checkout without it skips, CI (CI=true) fails."""
    if not DATASETS.exists():
        unavailable("../shared/datasets/trec", FileNotFoundError(DATASETS))


def run(script: str, out: Path, *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAW_")}
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out), *extra]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def test_training_benchmark_measures_anchor_and_thaw_side_by_side(tmp_path):
    result = run("training.py", tmp_path / "training.json", "--sections", "anchor,thaw")
    rows = [row for section in ("anchor", "thaw") for row in result["sections"][section]["rows"]]
    assert {row["side"] for row in rows} == {"anchor", "thaw"}
    for row in rows:
        assert row["train_seconds"] > 0 and 0 <= row["test_accuracy"] <= 1


def test_serving_benchmark_measures_both_servers_and_memory(tmp_path):
    result = run("serving.py", tmp_path / "serving.json")
    servers = {row["server"] for row in result["rows"]}
    assert servers == {"anchor", "thaw"}
    # Counted windows are 1 s at smoke size: on a busy machine a window may finish no request, so
    # only errors are checked, and that every measurement reports its numbers.
    assert all(row["errors"] == 0 for row in result["rows"])
    assert all(row["requests_per_second"] >= 0 and "server_cpu_ms_per_request" in row for row in result["rows"])
    assert result["memory"]["adapters"] >= 1 and result["memory"]["rss_after_adapters_bytes"] > 0


def test_serving_accuracy_benchmark_compares_every_switch(tmp_path):
    result = run("serving_accuracy.py", tmp_path / "accuracy.json")
    assert {(row["recipe"], row["serving"]) for row in result["rows"]} == {
        (recipe, switch) for recipe in ("fine_tuning", "adapters") for switch in ("fp32", "bf16", "int8")
    }
    fp32 = [row for row in result["rows"] if row["serving"] == "fp32"]
    assert all(row["agreement_with_fp32"] == 1.0 and row["max_probability_change"] == 0 for row in fp32)


def test_forward_throughput_benchmark_measures_every_switch(tmp_path):
    result = run("forward_throughput.py", tmp_path / "forward.json")
    assert {row["serving"] for row in result["rows"]} == {"fp32", "bf16", "int8", "onnx fp32", "onnx int8"}
    assert all(row["texts_per_second"] > 0 for row in result["rows"])


def test_serving_profile_groups_the_api_process_cpu(tmp_path):
    result = run("profile_serving.py", tmp_path / "profile.json")
    shares = result["cpu_share"]
    assert "forward pass (torch, transformers)" in shares
    assert abs(sum(shares.values()) - 1) < 0.01


def test_signal_benchmark_measures_every_variant_ensemble_and_distillation(tmp_path):
    result = run("more_signal.py", tmp_path / "signal.json")
    assert result["smoke"] is True
    sections = result["sections"]
    variants = {row["variant"] for row in sections["sst2"]["rows"]}
    assert variants == {"fine_tuning", "masked_lm_stage", "consistency", "trec_then_sst2"}
    for row in sections["sst2"]["rows"]:
        assert 0 <= row["dev_accuracy_mean"] <= 1 and row["train_seconds_mean"] > 0
        assert len(row["dev_accuracy_per_seed"]) == len(sections["sst2"]["settings"]["seeds"])
    ensemble = sections["ensemble"]
    assert len(ensemble["members"]) == ensemble["settings"]["ensemble_size"]
    assert 0 <= ensemble["ensemble"]["test_accuracy"] <= 1
    models = sections["distillation"]["models"]
    assert set(models) == {"teacher", "student", "labels_only"}
    assert len(models["student"]["layers"]) == 3 and len(models["teacher"]["layers"]) == 6
    speed = sections["distill_speed"]
    assert speed["teacher"]["texts_per_second"] > 0 and speed["student"]["texts_per_second"] > 0
    # the saved models predict as they did when trained
    assert abs(speed["student"]["accuracy_of_loaded_model"] - models["student"]["test_accuracy"]) < 1e-9


def test_quality_benchmark_puts_the_default_job_beside_the_trainer(tmp_path):
    result = run("quality.py", tmp_path / "quality.json", "--sets", "trec", "--seeds", "0")
    trec = result["sections"]["trec"]
    assert set(trec["contenders"]) == {"HF Trainer", "Thaw default"}
    default = trec["contenders"]["Thaw default"]
    assert default["runs"][0]["recipe"] == "fine_tuning"  # auto, on 320 rows of 6 classes (53 per class)
    assert isinstance(trec["default_minus_trainer_points"], float)


def test_setfit_benchmark_runs_every_recipe_on_the_same_rows(tmp_path):
    result = run("setfit.py", tmp_path / "setfit.json", "--sets", "trec", "--recipes", "setfit,fine_tuning")
    rows = result["sections"]["trec"]["per_class"]["4"]
    assert set(rows) == {"setfit", "fine_tuning"}
    assert all(0 <= row["test_accuracy"]["mean"] <= 1 for row in rows.values())
