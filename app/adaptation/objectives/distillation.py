"""Knowledge distillation (`teacher`, `distillation`): Hinton et al. 2015.

The student's loss is (1 - w) * CE(labels, student) + w * T^2 * KL(teacher_T || student_T), where
x_T = softmax(logits / T); the T^2 keeps the soft term's gradients on the scale of the hard one's as
T changes. The teacher's softened distribution (for an ensemble, the mean of its members') is
computed once per example before training. A transfer set adds the soft term alone: the unlabeled
text when given, else (`augment`) perturbed copies of the training texts, each word masked or dropped
with probability `augment_rate` (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT
into Simple Neural Networks"): the teacher's answers on texts near the training ones carry its
knowledge where the labeled rows alone do not reach.

Enough steps: the transfer set trains as steps of its own (`TransferSet`), interleaved with the
main task's batches as a multi-task run interleaves its tasks, so an epoch reads each transfer
text once in expectation and the learning-rate schedule spans those steps too (one transfer batch per labeled step
read a 4x augmented set only half-way in two epochs). With `layer_weight` (beta), transfer steps also
pull each student layer's pooled output towards its teacher layer's (Patient Knowledge Distillation,
Sun et al. 2019; layer_states.py). Where the student's weights start (`student_init`) is decided when
it is built (single.py).
"""

from __future__ import annotations

import random

import torch
from torch import nn

from app.adaptation.data import Batch, Batches, token_batches
from app.adaptation.labels import InvalidTaskData
from app.adaptation.layer_states import logits_and_layers, patient_loss, teacher_layers
from app.adaptation.model import TextClassifier
from app.adaptation.objectives import OBJECTIVES, ObjectiveContext, StepInputs
from app.adaptation.resources import Teacher, lead_member
from app.adaptation.student import kept_layers


def distillation_loss(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor, temperature: float):
    """T^2 * mean over rows of KL(teacher_T || softmax(student / T))."""
    log_student = (student_logits.float() / temperature).log_softmax(-1)
    kl = nn.functional.kl_div(log_student, teacher_probabilities.float(), reduction="batchmean")
    return temperature**2 * kl


def augmented_copies(texts: list, copies: int, rate: float, mask_token: str, seed: int) -> list:
    """`copies` perturbed versions of every text (a pair: both sides): each word is kept, replaced by
    the mask token, or dropped, the last two each with probability rate / 2; a copy keeps one word."""
    rng = random.Random(seed)

    def perturb(text: str) -> str:
        words = text.split()
        kept = []
        for word in words:
            draw = rng.random()
            kept.append(word if draw >= rate else (mask_token if draw < rate / 2 else None))
        out = [w for w in kept if w is not None]
        return " ".join(out) if out else (words[0] if words else text)

    return [
        tuple(perturb(side) for side in text) if isinstance(text, tuple) else perturb(text)
        for _ in range(copies)
        for text in texts
    ]


def matched_layers(context: ObjectiveContext, teacher: Teacher, texts: list) -> torch.Tensor | None:
    """The teacher's pooled layer outputs on the transfer texts, one per student layer (student
    layer k is the teacher's layer kept[k] of the cut); None when the job matches no layers."""
    spec, options = context.spec, context.spec.distilling
    assert options is not None
    if options.layer_weight == 0:
        return None
    lead = lead_member(teacher)
    depth = lead.model.encoder.config.num_hidden_layers
    kept = kept_layers(depth, spec.student_layers) if spec.student_layers else list(range(depth))
    student, hidden = context.model.num_layers, context.model.encoder.config.hidden_size
    if len(kept) != student or lead.model.encoder.config.hidden_size != hidden:
        raise InvalidTaskData(
            f"distillation.layer_weight: the student's {student} layers of width {hidden} do not match the "
            f"teacher's layers {kept} of width {lead.model.encoder.config.hidden_size}; set it to 0"
        )
    return teacher_layers(lead.model, lead.tokenizer, texts, spec.training.max_length, kept)


TRANSFER_TASK = "distillation transfer"  # the transfer set's steps, beside the main task's (Batch.task)


class TransferSet:
    """The transfer set as steps of its own (a SampledTask, multitask.py): its batches interleave
    with the main task's (drawn in proportion to its batches), so an epoch reads the transfer set
    once in expectation and the schedule counts those steps. A step's loss is
    weight * T^2 * KL(teacher_T || student_T), plus beta * PKD's layer distance when layers are
    matched; no label term (the teacher alone labels these texts)."""

    name = TRANSFER_TASK

    def __init__(self, batches: Batches, targets: torch.Tensor, layers: torch.Tensor | None, options) -> None:
        self.batches, self.targets, self.layers, self.options = batches, targets, layers, options

    def loss(self, model: TextClassifier, batch: Batch, step: int) -> torch.Tensor:
        device = next(model.parameters()).device
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        types = None if batch.token_type_ids is None else batch.token_type_ids.to(device)
        penalty = None
        if self.layers is None:
            logits = model(ids, mask, types)
        else:
            logits, states = logits_and_layers(model, ids, mask)
            penalty = self.options.layer_weight * patient_loss(states, self.layers[batch.indices].to(device))
        soft = self.targets[batch.indices].to(device)
        total = self.options.weight * distillation_loss(logits.float(), soft, self.options.temperature)
        return total if penalty is None else total + penalty


class Distill:
    """The soft term on the labeled batch; the transfer set, when there is one, trains as its own
    steps (`sampled_tasks`)."""

    main_weight: float
    needs_inputs = False  # reads only the main head's logits

    def __init__(self, context: ObjectiveContext) -> None:
        spec, options = context.spec, context.spec.distilling
        assert options is not None and spec.teacher is not None
        teacher = context.resources.teacher(spec.teacher)
        self.options, self.device = options, context.device
        self.main_weight = 1.0 - options.weight
        self.train_targets = teacher.probabilities(context.train.texts, options.temperature)
        self.sampled_tasks: list[TransferSet] = []
        texts = transfer_texts(context)
        if texts is not None:
            targets = teacher.probabilities(texts, options.temperature)
            batches = token_batches(context.tokenizer, texts, spec.training.max_length, None, spec.training.batch_size)
            layers = matched_layers(context, teacher, texts)
            self.sampled_tasks.append(TransferSet(batches, targets, layers, options))
        transfer = (
            f" and {len(texts)} {'unlabeled' if options.unlabeled else 'augmented'} ones "
            f"({len(self.sampled_tasks[0].batches)} transfer steps an epoch)"
            if texts is not None
            else ""
        )
        context.callbacks.on_event(
            "distillation",
            f"teacher {spec.teacher} labelled {len(context.train)} training texts{transfer}"
            f" at temperature {options.temperature}",
            {"teacher": spec.teacher, "temperature": options.temperature, "weight": options.weight},
        )

    def loss(self, model: TextClassifier, inputs: StepInputs) -> torch.Tensor:
        targets = self.train_targets[inputs.batch.indices].to(self.device)
        return self.options.weight * distillation_loss(inputs.logits, targets, self.options.temperature)


def transfer_texts(context: ObjectiveContext) -> list | None:
    """The unlabeled set when given, else `augment` perturbed copies of the training texts; None
    with neither."""
    spec, options = context.spec, context.spec.distilling
    assert options is not None
    if options.unlabeled is not None:
        field = options.unlabeled_text_field or spec.text_field
        return context.resources.texts_of(options.unlabeled, field, options.max_unlabeled)
    if options.augment:
        mask = context.tokenizer.mask_token or context.tokenizer.unk_token
        return augmented_copies(context.train.texts, options.augment, options.augment_rate, mask, spec.training.seed)
    return None


@OBJECTIVES.register("distillation")
def distillation(context: ObjectiveContext) -> Distill | None:
    return Distill(context) if context.spec.teacher is not None else None
