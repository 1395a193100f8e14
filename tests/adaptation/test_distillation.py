"""Distillation: the student learns from the teacher's temperature-softened distribution; a cut
student keeps evenly spaced layers of its base, weight for weight."""

import random

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from app.adaptation import InvalidTaskData, TaskData, adapt, load_classifier
from app.adaptation.data import MAIN_TASK, Batch, LabeledTexts
from app.adaptation.ensemble import load_model
from app.adaptation.job import save_result
from app.adaptation.layer_states import patient_loss, pooled_layers, teacher_layers
from app.adaptation.model import load_pretrained_encoder
from app.adaptation.objectives import ObjectiveContext, StepInputs
from app.adaptation.objectives.distillation import TRANSFER_TASK, Distill, augmented_copies, distillation_loss
from app.adaptation.resources import Resources
from app.adaptation.student import cut_encoder, kept_layers, teacher_start
from app.adaptation.tasks import TASKS
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment


def test_loss_is_t_squared_kl_of_softened_distributions():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    t = 4.0
    p = (teacher / t).softmax(-1)
    log_q = (student / t).log_softmax(-1)
    by_hand = t**2 * (p * (p.log() - log_q)).sum(-1).mean()
    torch.testing.assert_close(distillation_loss(student, p, t), by_hand)
    # Matching the teacher's softened distribution costs nothing; matching its hard one does.
    assert distillation_loss(teacher, p, t).abs() < 1e-6
    assert distillation_loss(teacher, teacher.softmax(-1), t) > 0.01


def test_gradient_scale_is_kept_by_t_squared():
    """Hinton et al. 2015, section 2.1: at high T the soft term's gradient shrinks as 1/T^2, which the
    T^2 factor restores, so changing T does not change how much the soft targets weigh."""
    student = torch.tensor([[1.0, -1.0, 0.0]], requires_grad=True)
    teacher_logits = torch.tensor([[0.5, -0.5, 0.2]])
    grads = []
    for t in (4.0, 16.0):
        student.grad = None
        distillation_loss(student, (teacher_logits / t).softmax(-1), t).backward()
        grads.append(student.grad.abs().sum().item())
    assert grads[1] / grads[0] == pytest.approx(1.0, abs=0.25)  # without T^2 it would be 1/16


class FixedTeacher:
    """A teacher whose logits are a fixed function of the text (its length), to test with."""

    labels = ["negative", "positive"]

    def __init__(self):
        self.calls = []

    def probabilities(self, texts, temperature=1.0):
        self.calls.append(temperature)
        logits = torch.tensor([[len(t) % 3 - 1.0, 1.0] for t in texts])
        return (logits / temperature).softmax(-1)


def test_the_student_targets_are_the_teachers_softened_probabilities(tiny_model_dir):
    train = sentiment(20)
    teacher = FixedTeacher()
    spec = job(teacher="t", distillation={"temperature": 3.0, "weight": 0.7, "augment": 0})
    model = classifier(tiny_model_dir, spec)
    task = TASKS.get("single_label")(teacher.labels, None)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ctx = ObjectiveContext(
        spec, model, tokenizer, torch.device("cpu"), train, task, Resources(models={"t": teacher}), _Quiet()
    )
    objective = Distill(ctx)
    assert teacher.calls == [3.0]
    torch.testing.assert_close(objective.train_targets, teacher.probabilities(train.texts, 3.0))
    assert objective.main_weight == pytest.approx(0.3)  # the hard labels get 1 - weight
    logits = torch.randn(4, 2)
    batch = Batch([3, 1, 4, 1], None, None, torch.tensor([0, 1, 0, 1]))
    loss = objective.loss(model, StepInputs(batch, logits, torch.zeros(0), 0))
    expected = 0.7 * distillation_loss(logits, teacher.probabilities([train.texts[i] for i in [3, 1, 4, 1]], 3.0), 3.0)
    torch.testing.assert_close(loss, expected)


class _Quiet:
    def on_event(self, *args):
        pass


def test_augmented_copies_mask_or_drop_words_and_nothing_else():
    texts = ["the film was a delight from start to end", ("first half", "second half of it")]
    copies = augmented_copies(texts, copies=50, rate=0.3, mask_token="[MASK]", seed=0)
    assert len(copies) == 100 and copies == augmented_copies(texts, 50, 0.3, "[MASK]", 0)
    singles = copies[0::2]
    assert all(set(c.split()) <= set(texts[0].split()) | {"[MASK]"} for c in singles)
    words = sum(len(c.split()) for c in singles)
    masked = sum(c.split().count("[MASK]") for c in singles)
    assert 0.09 < masked / (50 * 9) < 0.21  # about rate / 2 of the words become the mask...
    assert 0.09 < 1 - words / (50 * 9) < 0.21  # ...and about rate / 2 are dropped
    assert all(isinstance(c, tuple) and len(c) == 2 for c in copies[1::2])


def test_without_unlabeled_text_the_teacher_labels_an_augmented_transfer_set(tiny_model_dir):
    train, teacher = sentiment(20), FixedTeacher()
    spec = job(teacher="t", distillation={"temperature": 2.0, "augment": 3})
    events = []

    class Recorder:
        def on_event(self, kind, message, data):
            events.append(message)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ctx = ObjectiveContext(
        spec,
        classifier(tiny_model_dir, spec),
        tokenizer,
        torch.device("cpu"),
        train,
        TASKS.get("single_label")(teacher.labels, None),
        Resources(models={"t": teacher}),
        Recorder(),
    )
    objective = Distill(ctx)
    [transfer] = objective.sampled_tasks
    assert teacher.calls == [2.0, 2.0] and len(transfer.targets) == 3 * 20
    assert transfer.name == TRANSFER_TASK and len(transfer.batches.ids) == 60
    # the 60 copies are the training texts perturbed, each labelled by the teacher on its own text
    copies = augmented_copies(train.texts, 3, spec.distilling.augment_rate, tokenizer.mask_token, spec.training.seed)
    torch.testing.assert_close(transfer.targets, teacher.probabilities(copies, 2.0))
    assert "60 augmented ones (4 transfer steps an epoch)" in events[0]


def test_the_transfer_set_trains_in_steps_of_its_own(tiny_model_dir):
    """An epoch has as many steps as the main task and the transfer set have batches (20 rows at
    batch 8: 3; 60 copies: 8), each step drawn from one of them in proportion to its size, as a
    multi-task run draws its tasks; the steps of each are reported."""
    options = {"augment": 3, "student_init": "base"}  # FixedTeacher has no weights to start from
    training = {"epochs": 2, "batch_size": 8}
    spec = job(teacher="t", training=training, data={"validation_fraction": 0}, distillation=options)
    result = adapt(spec, TaskData(sentiment(20)), tiny_model_dir, resources=Resources(models={"t": FixedTeacher()}))
    steps = result.metrics["task_steps"]
    assert set(steps) == {MAIN_TASK, TRANSFER_TASK} and min(steps.values()) > 0
    assert sum(steps.values()) == 2 * (3 + 8)


def test_kept_layers_are_evenly_spaced_from_bottom_to_top():
    assert kept_layers(6, 3) == [0, 2, 5]
    assert kept_layers(6, 2) == [0, 5]
    assert kept_layers(12, 4) == [0, 4, 7, 11]
    assert kept_layers(6, 6) == list(range(6))
    with pytest.raises(ValueError, match="student_layers"):
        kept_layers(6, 7)


def test_a_cut_encoder_keeps_those_layers_bit_identical(tmp_path):
    from tests.utils.tiny_model import build_tiny_bert

    directory = build_tiny_bert(tmp_path, layers=4)
    original = load_file(str(directory / "model.safetensors"))
    encoder = load_pretrained_encoder(directory)
    assert cut_encoder(encoder, 2) == [0, 3]
    state = encoder.state_dict()
    assert encoder.config.num_hidden_layers == 2
    assert not any(k.startswith("encoder.layer.2.") for k in state)
    for key, value in state.items():
        if key.startswith("encoder.layer.1."):
            source = key.replace("encoder.layer.1.", "encoder.layer.3.")
        else:
            source = key
        if source in original:
            assert torch.equal(value, original[source]), key
    out = encoder(input_ids=torch.tensor([[101, 2000, 102]])).last_hidden_state
    assert out.shape == (1, 3, 32)


def test_a_distilled_student_job_saves_a_smaller_model(tmp_path):
    from tests.utils.tiny_model import build_tiny_bert

    base = build_tiny_bert(tmp_path / "base", layers=4)
    teacher = FixedTeacher()
    # FixedTeacher has no weights to start from
    spec = job(teacher="t", student_layers=2, training={"epochs": 2}, distillation={"student_init": "base"})
    result = adapt(spec, TaskData(sentiment(60)), base, resources=Resources(models={"t": teacher}))
    assert result.metrics["distillation"] == {"teacher": "t", "student_layers": 2}
    save_result(result, spec, tmp_path / "student")
    loaded = load_classifier(tmp_path / "student", base)
    assert loaded.model.encoder.config.num_hidden_layers == 2
    texts = sentiment(5, seed=8).texts
    torch.testing.assert_close(loaded.probabilities(texts), result_probabilities(result, texts))


def result_probabilities(result, texts):
    from app.adaptation import predict_proba

    return predict_proba(result.model, result.tokenizer, texts, 64)


def test_labels_outside_the_teachers_are_refused(tiny_model_dir):
    data = LabeledTexts(["a", "b", "c", "d"], ["negative", "positive", "neutral", "neutral"])
    with pytest.raises(InvalidTaskData, match="labels the teacher 't' does not: 'neutral'"):
        adapt(job(teacher="t"), TaskData(data), tiny_model_dir, resources=Resources(models={"t": FixedTeacher()}))


# ---- a student that starts from its teacher, and matches its layers (PKD) -------------------------


@pytest.fixture(scope="module")
def four_layer_teacher(tmp_path_factory):
    """A 4-layer tiny BERT fine-tuned for an epoch, saved and loaded as a job's teacher is."""
    from tests.utils.tiny_model import build_tiny_bert

    root = tmp_path_factory.mktemp("teacher")
    base = build_tiny_bert(root / "base", layers=4)
    spec = job(training={"epochs": 1}, data={"validation_fraction": 0})
    save_result(adapt(spec, TaskData(sentiment(48)), base), spec, root / "teacher")
    return base, load_model(root / "teacher", lambda _: base)


def test_a_student_takes_the_teachers_kept_layers_embeddings_and_head(four_layer_teacher):
    base, teacher = four_layer_teacher
    spec = job(teacher="t", student_layers=2)
    encoder = load_pretrained_encoder(base)
    kept = cut_encoder(encoder, 2)
    from app.adaptation.model import TextClassifier

    student = TextClassifier(encoder, spec.model, 2)
    copied, own = teacher_start(student, teacher.model, kept)
    assert kept == [0, 3] and own == [] and copied == len(student.state_dict())
    source, state = teacher.model.state_dict(), student.state_dict()
    for name, value in state.items():
        origin = name.replace("encoder.encoder.layer.1.", "encoder.encoder.layer.3.")
        assert torch.equal(value, source[origin]), name
    assert not torch.equal(
        state["encoder.encoder.layer.1.output.dense.weight"], source["encoder.encoder.layer.1.output.dense.weight"]
    )


def test_a_student_job_says_where_its_weights_started(four_layer_teacher):
    base, teacher = four_layer_teacher
    events = {}

    class Recorder:
        def on_progress(self, progress):
            pass

        def on_event(self, kind, message, data):
            events.setdefault(kind, data)

        def should_stop(self):
            return False

        def should_pause(self):
            return False

    resources = Resources(models={"t": teacher})
    data = TaskData(sentiment(32))
    adapt(job(teacher="t", student_layers=2, training={"epochs": 1}), data, base, Recorder(), resources=resources)
    assert events["student_init"]["from"] == "teacher" and events["student_init"]["own"] == []
    events.clear()
    spec = job(teacher="t", student_layers=2, training={"epochs": 1}, distillation={"student_init": "base"})
    adapt(spec, data, base, Recorder(), resources=resources)
    assert "student_init" not in events


def test_patient_loss_is_the_squared_distance_of_unit_vectors():
    student = torch.tensor([[[3.0, 0.0], [0.0, 2.0]]])  # one row, two layers
    same_directions = torch.tensor([[[1.0, 0.0], [0.0, 7.0]]])
    orthogonal = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    assert patient_loss(student, same_directions) == 0  # the length of a state does not count
    assert patient_loss(student, orthogonal) == pytest.approx(2.0 + 2.0)  # |a - b|^2 = 2 per layer


def test_the_teachers_layers_are_its_pooled_layer_outputs_in_input_order(four_layer_teacher):
    _, teacher = four_layer_teacher
    texts = ["a short one", "a rather longer text than the first of these"]
    states = teacher_layers(teacher.model, teacher.tokenizer, texts, 64, [0, 3])
    assert states.shape == (2, 2, 32) and states.dtype == torch.float16
    for row, text in enumerate(texts):
        encoded = teacher.tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            out = teacher.model.encoder(**encoded, output_hidden_states=True)
        mean = pooled_layers([out.hidden_states[1], out.hidden_states[4]], encoded["attention_mask"])
        torch.testing.assert_close(states[row].float(), mean[0], atol=2e-3, rtol=2e-3)


def test_layer_matching_adds_beta_times_the_patient_loss_on_the_transfer_set(four_layer_teacher):
    base, teacher = four_layer_teacher
    from app.adaptation.layer_states import logits_and_layers

    train = sentiment(16)
    contexts = {}
    for beta in (0.0, 50.0):
        spec = job(teacher="t", student_layers=2, distillation={"augment": 2, "layer_weight": beta})
        encoder = load_pretrained_encoder(base)
        cut_encoder(encoder, 2)
        from app.adaptation.model import TextClassifier

        torch.manual_seed(0)
        model = TextClassifier(encoder, spec.model, 2)
        ctx = ObjectiveContext(
            spec,
            model,
            teacher.tokenizer,
            torch.device("cpu"),
            train,
            TASKS.get("single_label")(teacher.labels, None),
            Resources(models={"t": teacher}),
            _Quiet(),
        )
        contexts[beta] = (Distill(ctx), model)
    [plain], [matching] = contexts[0.0][0].sampled_tasks, contexts[50.0][0].sampled_tasks
    assert plain.layers is None and matching.layers.shape == (32, 2, 32)
    model = contexts[50.0][1]
    model.eval()
    batch = next(matching.batches.training_order(random.Random(0)))
    with_layers = matching.loss(model, batch, 0)
    without = plain.loss(model, batch, 0)
    states = logits_and_layers(model, batch.input_ids, batch.attention_mask)[1]
    extra = patient_loss(states, matching.layers[batch.indices])
    torch.testing.assert_close(with_layers - without, 50.0 * extra, rtol=1e-4, atol=1e-4)
    # without layers, a transfer step is weight * T^2 * KL against the teacher on those texts
    soft = plain.targets[batch.indices]
    kl = distillation_loss(model(batch.input_ids, batch.attention_mask), soft, spec.distilling.temperature)
    torch.testing.assert_close(without, spec.distilling.weight * kl, rtol=1e-5, atol=1e-6)


def test_layer_matching_refuses_a_student_whose_layers_do_not_fit(four_layer_teacher, tiny_model_dir):
    _, teacher = four_layer_teacher
    spec = job(teacher="t", distillation={"layer_weight": 10.0})  # a 2-layer student, a 4-layer teacher, no cut
    ctx = ObjectiveContext(
        spec,
        classifier(tiny_model_dir, spec),
        teacher.tokenizer,
        torch.device("cpu"),
        sentiment(8),
        TASKS.get("single_label")(teacher.labels, None),
        Resources(models={"t": teacher}),
        _Quiet(),
    )
    with pytest.raises(InvalidTaskData, match="distillation.layer_weight: the student's 2 layers"):
        Distill(ctx)
