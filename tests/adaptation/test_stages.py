"""Stages before the main task: a masked-LM stage adapts the encoder to its domain, weights flow from
stage to stage and into the main task, stage heads are dropped, finished stages survive a resume,
and each stage runs the job its own spec describes."""

from __future__ import annotations

import importlib
import math
import random
from collections import Counter

import pytest
import torch

from app.adaptation import (
    Cancelled,
    Checkpoints,
    Paused,
    SilentCallbacks,
    TaskData,
    adapt,
    load_classifier,
    predict_proba,
)
from app.adaptation import masked_lm as masked_lm_module
from app.adaptation import stages as stages_module
from app.adaptation.artifact import read_card
from app.adaptation.data import token_batches
from app.adaptation.job import save_result
from app.adaptation.masked_lm import TiedLMHead, masked_batch_loss
from app.adaptation.model import TextClassifier, load_pretrained_encoder
from app.adaptation.resources import Resources
from app.schemas.recipes import SpecError, stage_spec
from tests.adaptation.helpers import job
from tests.utils.data import sentiment, three_way

adapt_module = importlib.import_module("app.adaptation.single")  # where the main task's model is built

# ---- data -------------------------------------------------------------------------------------------

# A small domain: every word is one WordPiece of the tiny BERT's (MiniLM's) vocabulary.
ANIMALS = ["cat", "dog", "horse", "bird", "fish", "cow"]
FOODS = ["bread", "apples", "rice", "cheese", "meat", "grass"]
PLACES = ["garden", "kitchen", "field", "house", "river", "forest"]
TIMES = ["morning", "evening"]


def _held_out_combination(animal: int, food: int, place: int) -> bool:
    return (animal + food + place) % 5 == 0  # about a fifth of the triples never appear in training


def domain_texts(held_out: bool, n: int | None = None, seed: int = 0) -> list[str]:
    """Distinct sentences of the domain; the held-out ones use (animal, food, place) triples that the
    training ones never use, so a lower loss on them is not memorisation of whole sentences."""
    texts = [
        f"the {animal} eats {food} in the {place} every {time}"
        for a, animal in enumerate(ANIMALS)
        for f, food in enumerate(FOODS)
        for p, place in enumerate(PLACES)
        for time in TIMES
        if _held_out_combination(a, f, p) == held_out
    ]
    random.Random(seed).shuffle(texts)
    return texts if n is None else texts[:n]


def text_rows(texts: list[str]) -> list[dict]:
    return [{"text": text} for text in texts]


MAIN = TaskData(sentiment(64, seed=1), sentiment(32, seed=2))  # 4 batches of 16 per epoch


def mlm_stage(data: str = "dom", **options) -> dict:
    return {"objective": "masked_lm", "data": data, "epochs": 1, "learning_rate": 1e-2, **options}


def cls_stage(data: str = "aux3", **options) -> dict:
    return {"objective": "classification", "data": data, "epochs": 1, **options}


def resources() -> Resources:
    return Resources(
        tables={
            "dom": text_rows(domain_texts(held_out=False, n=80, seed=1)),
            "dom2": text_rows(domain_texts(held_out=False, n=80, seed=2)),
            "aux3": three_way(72, seed=3),
        }
    )


class Recorder(SilentCallbacks):
    """Keeps events and progress; stops the run (as a killed process would) once it has seen `stop_at`
    = (count, prefix): that many progress reports of the part whose label starts with prefix."""

    def __init__(self, stop_at: tuple[int, str] | None = None) -> None:
        self.stop_at, self.events, self.progress = stop_at, [], []

    def on_event(self, kind, message, data):
        self.events.append((kind, message, data))

    def on_progress(self, progress):
        self.progress.append(progress)

    def should_stop(self):
        if self.stop_at is None:
            return False
        count, prefix = self.stop_at
        return sum(p.stage.startswith(prefix) for p in self.progress) >= count


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class StageSpy:
    """Wraps the real stage functions: records the encoder's weights as each stage starts and ends,
    and the job and arguments it was given; also the encoder weights the main task's model is built on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict] = []
        self.main_start: list[dict[str, torch.Tensor]] = []
        self._wrap(monkeypatch, "masked_lm_stage", encoder_at=2, job_at=1, data=lambda args: args[0].data)
        self._wrap(monkeypatch, "classification_stage", encoder_at=1, job_at=0, data=lambda args: args[0].data.train)
        real_classifier = adapt_module.TextClassifier

        def classifier(encoder, config, num_labels):
            self.main_start.append(snapshot(encoder))
            return real_classifier(encoder, config, num_labels)

        monkeypatch.setattr(adapt_module, "TextClassifier", classifier)

    def _wrap(self, monkeypatch, name: str, encoder_at: int, job_at: int, data) -> None:
        real = getattr(stages_module, name)

        def spy(*args):
            encoder = args[encoder_at]
            call = {"kind": name, "job": args[job_at], "data": data(args), "start": snapshot(encoder)}
            self.calls.append(call)
            call["report"] = real(*args)
            call["end"] = snapshot(encoder)
            return call["report"]

        monkeypatch.setattr(stages_module, name, spy)


# ---- 1. a masked-LM stage adapts the encoder to its domain -------------------------------------------


def mean_masked_loss(encoder, head, tokenizer, texts: list[str], seeds=(11, 12, 13)) -> float:
    """Masked-LM loss over `texts`, with the same masks whatever the model (fixed generator seeds)."""
    batches = token_batches(tokenizer, texts, 64, None, 32)
    encoder.eval()
    head.eval()
    losses = []
    with torch.no_grad():
        for seed in seeds:
            for i, batch in enumerate(batches.by_length()):
                generator = torch.Generator().manual_seed(seed * 1000 + i)
                loss = masked_batch_loss(
                    encoder,
                    head,
                    batch.input_ids,
                    batch.attention_mask,
                    tokenizer.all_special_ids,
                    tokenizer.mask_token_id,
                    0.15,
                    generator,
                )
                losses.append(loss.item())
    return sum(losses) / len(losses)


def test_a_masked_lm_stage_lowers_masked_lm_loss_on_held_out_text_of_its_domain(tiny_model_dir, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    heads: list[tuple[TiedLMHead, dict]] = []

    class RecordedHead(TiedLMHead):  # the real head, kept so its trained weights can be measured
        def __init__(self, encoder):
            super().__init__(encoder)
            heads.append((self, snapshot(self)))

    split: list[list[str]] = []
    real_token_batches = stages_module.token_batches

    def recorded_token_batches(tokenizer, texts, *args):
        split.append(list(texts))
        return real_token_batches(tokenizer, texts, *args)

    monkeypatch.setattr(masked_lm_module, "TiedLMHead", RecordedHead)
    for module in (stages_module, masked_lm_module):  # the held-out text, then the training text
        monkeypatch.setattr(module, "token_batches", recorded_token_batches)

    texts = domain_texts(held_out=False, n=200, seed=1)
    ours = domain_texts(held_out=True, n=96, seed=2)  # never seen by the stage, in any form
    spec = job(stages=[mlm_stage(epochs=3, learning_rate=2e-2)])
    encoder = load_pretrained_encoder(tiny_model_dir)
    pretrained = load_pretrained_encoder(tiny_model_dir)
    [report] = stages_module.run_stages(
        spec, encoder, tokenizer, Resources(tables={"dom": text_rows(texts)}), SilentCallbacks(), 60.0, None
    )

    # The stage's own measure is on text it held out of its training: a tenth of its rows.
    reported_held, trained = split
    assert len(reported_held) == report["held_out_texts"] == 20 and report["examples"] == 180 == len(trained)
    assert not set(reported_held) & set(trained) and sorted(reported_held + trained) == sorted(texts)
    assert report["steps"] == 3 * math.ceil(180 / 16)
    # Before: about ln(vocabulary), a model that knows nothing; after: far lower.
    assert report["held_out_loss_before"] == pytest.approx(math.log(tokenizer.vocab_size), abs=1.0)
    assert report["held_out_loss_after"] < report["held_out_loss_before"] - 4.0

    # Independently, on our own held-out sentences, with our own fixed masks: the stage's model
    # before (its head as made, the pretrained encoder) and after (its trained head and encoder).
    [(head, initial_head)] = heads
    as_made, trained_on_pretrained = TiedLMHead(pretrained), TiedLMHead(pretrained)
    as_made.load_state_dict(initial_head)
    trained_on_pretrained.load_state_dict(head.state_dict())
    before = mean_masked_loss(pretrained, as_made, tokenizer, ours)
    after = mean_masked_loss(encoder, head, tokenizer, ours)
    with_pretrained_encoder = mean_masked_loss(pretrained, trained_on_pretrained, tokenizer, ours)
    assert before == pytest.approx(report["held_out_loss_before"], abs=0.5)
    assert after < before - 4.0
    assert after == pytest.approx(report["held_out_loss_after"], abs=1.0)
    # Lower than any context-free guess can reach (the entropy of the domain's word frequencies): the
    # encoder reads the context, it did not only learn which words the domain uses.
    assert after < word_entropy(tokenizer, texts) - 0.5
    # The head is dropped after the stage; the gain is in the encoder: the trained head on the
    # pretrained encoder is about as bad as before.
    assert with_pretrained_encoder > after + 3.0


def word_entropy(tokenizer, texts: list[str]) -> float:
    counts = Counter(token for text in texts for token in tokenizer.tokenize(text))
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values())


# ---- 2. weights flow from stage to stage and into the main task ---------------------------------------


def test_each_stage_starts_from_the_weights_the_previous_one_ended_with(tiny_model_dir, tmp_path, monkeypatch):
    spy = StageSpy(monkeypatch)
    spec = job(stages=[cls_stage(), mlm_stage()], training={"epochs": 1})
    checkpoints = Checkpoints(tmp_path, 100)
    result = adapt(spec, MAIN, tiny_model_dir, None, 60.0, resources(), checkpoints)

    first, second = spy.calls
    assert [first["kind"], second["kind"]] == ["classification_stage", "masked_lm_stage"]
    pretrained = snapshot(load_pretrained_encoder(tiny_model_dir))
    # The stages start from the pretrained weights, without the pretraining pooler (no model uses it).
    assert same(first["start"], {k: v for k, v in pretrained.items() if not k.startswith("pooler.")})
    # Each stage changed the encoder ...
    assert not same({k: first["start"][k] for k in first["end"]}, first["end"])
    assert not same(second["start"], second["end"])
    # ... and the next part started from exactly what it ended with.
    assert same(second["start"], first["end"])
    [main_start] = spy.main_start
    assert same(main_start, second["end"])
    # What each stage handed on through the checkpoints is the same.
    assert same(checkpoints.finished("stage-1")[0], first["end"])
    assert same(checkpoints.finished("stage-2")[0], second["end"])
    assert [s["stage"] for s in result.metrics["stages"]] == [1, 2]


# ---- 3. the heads of classification stages are dropped -----------------------------------------------


def test_a_3_label_stage_before_a_2_label_adapters_job_leaves_no_trace_but_its_encoder(
    tiny_model_dir, tmp_path, monkeypatch
):
    spy = StageSpy(monkeypatch)
    heads = []
    real_classifier = stages_module.TextClassifier

    def stage_classifier(encoder, config, num_labels):
        heads.append(real_classifier(encoder, config, num_labels))
        return heads[-1]

    monkeypatch.setattr(stages_module, "TextClassifier", stage_classifier)
    spec = job(recipe="adapters", stages=[cls_stage(epochs=2)], training={"epochs": 1})  # stage: fine_tuning
    result = adapt(spec, MAIN, tiny_model_dir, None, 60.0, resources())

    [stage] = spy.calls
    [stage_model] = heads
    assert stage_model.head[-1].out_features == 3 and stage["report"]["labels"] == ["negative", "neutral", "positive"]
    assert result.labels == ["negative", "positive"]
    assert result.model.head[-1].out_features == 2
    fresh = TextClassifier(load_pretrained_encoder(tiny_model_dir), spec.model, 2)
    assert result.model.state_dict().keys() == fresh.state_dict().keys()  # no stage head, no extra heads
    # The adapters job froze the encoder it was given, which is the stage's: exactly its weights but
    # the LayerNorms are frozen, bit-identical to those the stage ended with, unlike the base model's.
    frozen = {
        name.removeprefix("encoder.").replace(".inner.", "."): p.detach()
        for name, p in result.model.named_parameters()
        if not p.requires_grad
    }
    assert set(frozen) == {k for k in stage["end"] if "LayerNorm" not in k} and len(frozen) >= 20
    assert all(torch.equal(value, stage["end"][k]) for k, value in frozen.items())
    pretrained = load_pretrained_encoder(tiny_model_dir).state_dict()
    assert not all(torch.equal(value, pretrained[k]) for k, value in frozen.items())

    # So the artifact must hold every weight, even for an adapters job, and loads back alone.
    save_result(result, spec, tmp_path / "model")
    assert read_card(tmp_path / "model")["weights"] == "full"
    loaded = load_classifier(tmp_path / "model")
    texts = MAIN.validation.texts
    probabilities = predict_proba(result.model, result.tokenizer, texts, 64)
    assert probabilities.shape == (len(texts), 2)
    assert torch.equal(loaded.probabilities(texts), probabilities)
    # Only the weights the adapters job trained, laid over the base model ("own"), are another model.
    own = {name: p.detach() for name, p in result.model.named_parameters() if p.requires_grad}
    over_base = TextClassifier(load_pretrained_encoder(tiny_model_dir), spec.model, 2)
    over_base.load_state_dict(own, strict=False)
    assert not torch.allclose(predict_proba(over_base, result.tokenizer, texts, 64), loaded.probabilities(texts))


# ---- 4. a resumed job does not run finished stages again ----------------------------------------------


TWO_MLM = job(stages=[mlm_stage("dom"), mlm_stage("dom2")], training={"epochs": 1})


@pytest.fixture(scope="module")
def crashed_in_stage_2(tiny_model_dir, tmp_path_factory):
    """An unbroken run, and a run killed at step 2 of stage 2 then run again on the same checkpoints."""
    base = tmp_path_factory.mktemp("stage-resume")
    runs = {}
    for name, stop_at in (("unbroken", None), ("crashed", (2, "stage 2/2")), ("resumed", None)):
        with pytest.MonkeyPatch.context() as monkeypatch:
            spy, recorder = StageSpy(monkeypatch), Recorder(stop_at)
            checkpoints = Checkpoints(base / ("unbroken" if name == "unbroken" else "broken"), 100)
            try:
                result = adapt(TWO_MLM, MAIN, tiny_model_dir, recorder, 0.0, resources(), checkpoints)
            except Cancelled:
                result = None
        runs[name] = {"spy": spy, "events": recorder.events, "result": result}
    assert runs["crashed"]["result"] is None and [c["data"] for c in runs["crashed"]["spy"].calls] == ["dom", "dom2"]
    return runs


def test_a_finished_stage_is_not_run_again_and_hands_on_its_weights(crashed_in_stage_2):
    unbroken, crashed, resumed = (crashed_in_stage_2[k] for k in ("unbroken", "crashed", "resumed"))
    [stage_2] = resumed["spy"].calls  # stage 1 did not run
    assert stage_2["data"] == "dom2"
    finished = [(m, d) for k, m, d in resumed["events"] if k == "stage_finished"]
    assert finished[0][0] == "stage 1/2 (masked_lm): finished before the resume, not run again"
    assert [d["stage"] for k, _, d in resumed["events"] if k == "stage_started"] == [2]
    # Stage 2 starts from exactly what stage 1 ended with in the unbroken run.
    assert same(stage_2["start"], unbroken["spy"].calls[0]["end"])
    # The resumed job reports stage 1 as the run that finished it did.
    assert resumed["result"].metrics["stages"][0] == crashed["spy"].calls[0]["report"] | {
        "stage": 1,
        "objective": "masked_lm",
        "data": "dom",
    }


def test_a_job_resumed_after_a_finished_stage_ends_with_the_unbroken_runs_weights(crashed_in_stage_2):
    unbroken, resumed = crashed_in_stage_2["unbroken"]["result"], crashed_in_stage_2["resumed"]["result"]
    assert same(snapshot(unbroken.model), snapshot(resumed.model))


class PauseIn(Recorder):
    """Asks to pause once the part whose label starts with `prefix` has reported `count` times."""

    def __init__(self, count: int, prefix: str) -> None:
        super().__init__()
        self.count, self.prefix = count, prefix

    def should_pause(self):
        return sum(p.stage.startswith(self.prefix) for p in self.progress) >= self.count


def test_a_masked_lm_stage_pauses_inside_its_run_and_resumes_to_the_unbroken_weights(tiny_model_dir, tmp_path):
    spec = job(stages=[mlm_stage(epochs=2)], training={"epochs": 1})
    unbroken = adapt(spec, MAIN, tiny_model_dir, None, 0.0, resources(), Checkpoints(tmp_path / "unbroken", 100))
    pausing = PauseIn(3, "stage 1/1")
    with pytest.raises(Paused, match="paused at step 3 of 10"):  # 2 epochs of 5 batches
        adapt(spec, MAIN, tiny_model_dir, pausing, 0.0, resources(), Checkpoints(tmp_path / "paused", 100))
    recorder = Recorder()
    resumed = adapt(spec, MAIN, tiny_model_dir, recorder, 0.0, resources(), Checkpoints(tmp_path / "paused", 100))
    assert [(m, d["step"]) for k, m, d in recorder.events if k == "resumed"] == [
        ("stage 1/1 (masked_lm): resumed from the checkpoint at step 3 (epoch 1, batch 3)", 3)
    ]
    stage_steps = [p.step for p in recorder.progress if p.stage.startswith("stage 1/1")]
    assert stage_steps == list(range(4, 11))  # it went on from the step it paused at, not from the start
    assert same(snapshot(unbroken.model), snapshot(resumed.model))
    assert unbroken.metrics["stages"][0]["held_out_loss_after"] == resumed.metrics["stages"][0]["held_out_loss_after"]


def run_main_crash(spec, tiny_model_dir, tmp_path):
    """The unbroken run, and a run killed at step 3 of the main task (after its checkpoint at step 2),
    run again on the same checkpoints."""
    unbroken = adapt(spec, MAIN, tiny_model_dir, None, 0.0, resources(), Checkpoints(tmp_path / "unbroken", 2))
    with pytest.raises(Cancelled):
        crash = Recorder((3, "train"))
        adapt(spec, MAIN, tiny_model_dir, crash, 0.0, resources(), Checkpoints(tmp_path / "broken", 2))
    recorder = Recorder()
    resumed = adapt(spec, MAIN, tiny_model_dir, recorder, 0.0, resources(), Checkpoints(tmp_path / "broken", 2))
    return unbroken, resumed, recorder


def test_a_job_killed_in_the_main_task_after_its_stages_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    spec = job(stages=[mlm_stage()], training={"epochs": 2})
    unbroken, resumed, recorder = run_main_crash(spec, tiny_model_dir, tmp_path)
    kinds = [k for k, _, _ in recorder.events]
    assert "stage_started" not in kinds and kinds.count("stage_finished") == 1
    assert [d["step"] for k, _, d in recorder.events if k == "resumed"] == [2]
    assert same(snapshot(unbroken.model), snapshot(resumed.model))
    assert unbroken.metrics["history"] == resumed.metrics["history"]


def test_a_job_with_a_finished_classification_stage_can_be_resumed(tiny_model_dir, tmp_path):
    spec = job(stages=[cls_stage()], training={"epochs": 2})
    unbroken, resumed, _ = run_main_crash(spec, tiny_model_dir, tmp_path)
    assert same(snapshot(unbroken.model), snapshot(resumed.model))


# ---- 5. each stage runs the job its spec describes ---------------------------------------------------


def test_stage_spec_takes_the_stages_recipe_and_overrides_and_the_jobs_seed_and_length():
    spec = job(
        recipe="adapters",
        training={"seed": 7, "max_length": 48, "batch_size": 16, "learning_rate": 5e-4},
        stages=[
            cls_stage(
                recipe="ulmfit",
                epochs=2,
                learning_rate=3e-4,
                batch_size=8,
                overrides={"optimization": {"weight_decay": 0.05}, "training": {"early_stopping_patience": 1}},
            ),
            mlm_stage(learning_rate=None),
        ],
    )
    first, second = stage_spec(spec, 0), stage_spec(spec, 1)
    assert spec.model.adapters is not None  # the main job has adapters; no stage does
    for stage in (first, second):
        assert stage.model.adapters is None and stage.model.lora is None and stage.optimization.train == "all"
        assert (stage.training.seed, stage.training.max_length, stage.base_model) == (7, 48, "tiny-bert")
        assert stage.optimization.regularizers == []
    assert first.recipe == "ulmfit" and first.data.train == "aux3"
    assert (first.training.epochs, first.training.learning_rate, first.training.batch_size) == (2, 3e-4, 8)
    assert first.optimization.unfreezing.name == "gradual" and first.optimization.discriminative_decay == 2.6
    assert first.optimization.weight_decay == 0.05 and first.training.early_stopping_patience == 1
    # A stage without a recipe under a job whose recipe freezes the encoder fine-tunes, with that
    # recipe's learning rate (not the main job's), and the job's batch size.
    assert second.recipe == "fine_tuning" and second.training.learning_rate == 1e-4 != spec.training.learning_rate
    assert (second.training.epochs, second.training.batch_size) == (1, 16)
    assert second.optimization.unfreezing.name == "none"
    # Under a recipe that trains everything, a stage follows the job's recipe, without its regularizer.
    l2 = stage_spec(job(recipe="l2_sp", stages=[mlm_stage()]), 0)
    assert l2.recipe == "l2_sp" and l2.optimization.regularizers == []


def test_a_stage_must_train_the_encoders_own_weights_with_a_known_recipe():
    with pytest.raises(SpecError, match="stages.0: a stage trains the encoder's own weights"):
        job(stages=[mlm_stage(recipe="adapters")])
    with pytest.raises(SpecError, match="stages.0: a stage trains the encoder's own weights"):
        job(stages=[mlm_stage(overrides={"optimization": {"train": "head_only"}})])
    with pytest.raises(SpecError, match="stages.0.recipe: unknown recipe 'nope'"):
        job(stages=[mlm_stage(recipe="nope")])


def test_a_stage_runs_with_its_own_epochs_batch_size_and_learning_rate(tiny_model_dir, monkeypatch):
    spy = StageSpy(monkeypatch)
    stage = mlm_stage(
        epochs=2,
        batch_size=8,
        learning_rate=2e-2,
        overrides={"optimization": {"lr_schedule": "constant"}},
    )
    spec = job(stages=[stage], training={"epochs": 1, "learning_rate": 1e-3})
    recorder = Recorder()
    result = adapt(spec, MAIN, tiny_model_dir, recorder, 0.0, resources())
    [call] = spy.calls
    assert call["job"] == stage_spec(spec, 0)
    steps = 2 * math.ceil(72 / 8)
    assert result.metrics["stages"][0]["steps"] == steps
    stage_progress = [p for p in recorder.progress if p.stage.startswith("stage 1/1")]
    assert [p.step for p in stage_progress] == list(range(1, steps + 1))
    assert {p.learning_rate for p in stage_progress} == {2e-2}
    assert {(p.epochs, p.total_steps) for p in stage_progress} == {(2, steps)}
    # The main task then runs with its own settings.
    main_progress = [p for p in recorder.progress if not p.stage.startswith("stage")]
    assert len(main_progress) == 4 and max(p.learning_rate for p in main_progress) <= 1e-3
