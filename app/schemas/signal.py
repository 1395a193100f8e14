"""Job options that bring in more signal than the labeled training set (the tutorial's third part):
stages before the main task, auxiliary tasks trained with it, consistency on unlabeled text, slices,
and distillation from a teacher. Ensembles live in spec.py (their members are whole job specs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from app.adaptation.perturbations import PERTURBATIONS
from app.adaptation.sampling import SAMPLINGS
from app.adaptation.slicing import rule_fields
from app.schemas.references import DatasetRef, Reference
from app.schemas.spec_base import Strict

if TYPE_CHECKING:
    from app.schemas.spec import JobSpec

IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class Stage(Strict):
    """One step run before the main task; the encoder's weights flow from stage to stage, and the
    heads of classification stages are dropped."""

    objective: Literal["masked_lm", "classification"] = Field(
        description="masked_lm: domain-adaptive LM fine-tuning on the dataset's text (ULMFiT's second step); "
        "classification: an intermediate task with its own labels (STILTs)."
    )
    data: str = Field(description="Dataset id; masked_lm reads only its text column, so it may be unlabeled.")
    text_field: str | None = Field(None, min_length=1, description="Text column; null: the job's text_field.")
    label_field: str | None = Field(
        None, min_length=1, description="classification: label column; null: the job's label_field."
    )
    recipe: str | None = Field(None, description="classification: recipe of this stage; null: the job's recipe.")
    epochs: int = Field(1, ge=1, le=100, description="Passes over the stage's data.")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Peak learning rate; null: the recipe's.")
    batch_size: int | None = Field(None, ge=1, le=1024, description="null: the job's batch_size.")
    mask_rate: float = Field(0.15, gt=0, lt=1, description="masked_lm: share of tokens masked (Devlin et al. 2019).")
    max_examples: int | None = Field(
        None, ge=1, description="Use at most this many rows of the dataset (the first ones); null: all."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Partial `optimization` / `training` settings laid over the stage's recipe (classification).",
    )
    job: JobSpec | None = Field(
        None,
        description="The job this stage runs: its recipe with the stage's settings laid over it, expanded by the "
        "service at submission and stored with the job (a value sent is replaced by the expansion).",
    )

    def references(self, job: JobSpec) -> Iterator[Reference]:
        text_field = self.text_field or job.text_field
        if self.objective == "masked_lm":
            yield DatasetRef("data", self.data, (text_field,), limit=self.max_examples)
        else:
            label_field = self.label_field or job.label_field
            yield DatasetRef(
                "data", self.data, (text_field,), label_field, "a classification stage", self.max_examples, 2
            )

    @field_validator("overrides")
    @classmethod
    def _only_optimization_and_training(cls, value: dict[str, Any]) -> dict[str, Any]:
        stray = sorted(set(value) - {"optimization", "training"})
        if stray:
            raise ValueError(f"a stage overrides only optimization and training, not {', '.join(stray)}")
        return value


class AuxiliaryTask(Strict):
    """A task trained jointly with the main one: its own head (classification) or the tied LM head."""

    name: str = Field(pattern=IDENTIFIER, description="Names the task in events and metrics.")
    objective: Literal["classification", "masked_lm"] = "classification"
    data: str | None = Field(
        None,
        description="Dataset id. masked_lm without data reads the main task's training text at every main "
        "step, giving L = L_main + weight * L_lm (Chronopoulou et al. 2019); a task with data is sampled.",
    )
    text_field: str | None = Field(None, min_length=1, description="null: the job's text_field.")
    label_field: str | None = Field(None, min_length=1, description="classification: null: the job's label_field.")
    weight: float = Field(1.0, gt=0, le=100, description="Multiplies the task's loss.")
    mask_rate: float = Field(0.15, gt=0, lt=1, description="masked_lm: share of tokens masked.")

    @model_validator(mode="after")
    def _classification_has_data(self) -> AuxiliaryTask:
        if self.objective == "classification" and self.data is None:
            raise ValueError(f"task {self.name!r}: a classification task needs data (a labeled dataset id)")
        return self

    def references(self, job: JobSpec) -> Iterator[Reference]:
        if self.data is None:
            return  # a masked-LM task without data reads the main task's text
        text_field = self.text_field or job.text_field
        if self.objective == "masked_lm":
            yield DatasetRef("data", self.data, (text_field,))
        else:
            label_field = self.label_field or job.label_field
            yield DatasetRef("data", self.data, (text_field,), label_field, "a classification task", min_classes=2)


TaskSampling = SAMPLINGS.union()
Perturbation = PERTURBATIONS.union()


class Consistency(Strict):
    """Unsupervised data augmentation (Xie et al. 2020): predictions on unlabeled x and its perturbation
    x' should agree; the target on x is fixed (no gradient), sharpened, and kept only where confident."""

    data: str = Field(description="Dataset id of the unlabeled text (labels, if any, are ignored).")
    text_field: str | None = Field(None, min_length=1, description="null: the job's text_field.")
    perturbation: Perturbation = Field(
        default_factory=PERTURBATIONS.default("token_mask"), description="How x' is made from x."
    )
    weight: float = Field(1.0, gt=0, le=100, description="lambda: the consistency loss's weight.")
    sharpen_temperature: float | None = Field(
        0.4, gt=0, le=1, description="Target = softmax(logits / T) (UDA: 0.4); null: not sharpened."
    )
    confidence_threshold: float | None = Field(
        0.8, gt=0, lt=1, description="Only examples whose top probability reaches this count (UDA: 0.8); null: all."
    )
    batch_ratio: int = Field(1, ge=1, le=16, description="Unlabeled examples per step = batch_ratio * batch_size.")
    max_examples: int | None = Field(None, ge=1, description="Use at most this many rows; null: all.")

    def references(self, job: JobSpec) -> Iterator[Reference]:
        yield DatasetRef("data", self.data, (self.text_field or job.text_field,), limit=self.max_examples)


class SliceRules(Strict):
    """A named subset (Chen et al. 2019, slice-based learning) written with exactly one rule; one
    field per rule of app/adaptation/slicing (SliceSpec below)."""

    name: str = Field(pattern=IDENTIFIER, description="Names the slice in metrics and events.")
    weight: float = Field(1.0, gt=0, le=100, description="Weight of the slice head's loss.")

    @property
    def rule(self) -> str:
        return next(name for name in RULES if getattr(self, name) is not None)

    @model_validator(mode="after")
    def _one_rule(self) -> SliceRules:
        given = [name for name in RULES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"slice {self.name!r} needs exactly one rule of {', '.join(RULES)}; it has {len(given)}")
        return self


_RULES = rule_fields()
RULES = tuple(_RULES)
SliceSpec = create_model(
    "SliceSpec",
    __base__=SliceRules,
    __doc__=SliceRules.__doc__,
    __module__=__name__,
    **{name: (value | None, Field(None, description=doc)) for name, (value, doc) in _RULES.items()},
)


class Distillation(Strict):
    """How the student learns from `teacher` (Hinton et al. 2015)."""

    temperature: float = Field(2.0, gt=0, le=100, description="T of both softmaxes; the KL term is scaled by T^2.")
    weight: float = Field(
        0.5, ge=0, le=1, description="Share of the soft-target loss; 1 - weight goes to the true labels."
    )
    unlabeled: str | None = Field(None, description="Dataset id of extra text that only the teacher labels.")
    unlabeled_text_field: str | None = Field(None, min_length=1, description="null: the job's text_field.")
    max_unlabeled: int | None = Field(None, ge=1, description="Use at most this many unlabeled rows; null: all.")
    augment: int = Field(
        4,
        ge=0,
        le=20,
        description="With no unlabeled set: a transfer set of this many perturbed copies of each training text "
        "(every word masked or dropped with probability augment_rate), labelled by the teacher alone (Tang et al. "
        "2019; TinyBERT's augmentation, Jiao et al. 2020). 0: the training texts alone.",
    )
    augment_rate: float = Field(0.15, gt=0, lt=1, description="Share of words each augmented copy masks or drops.")
    layer_weight: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="beta of Patient Knowledge Distillation (Sun et al. 2019): on the transfer set, each student "
        "layer's mean-pooled output is pulled to its teacher layer's (the layers the cut kept) by the squared distance "
        "of the unit vectors, times beta. 0: logits alone.",
    )
    student_init: Literal["teacher", "base"] = Field(
        "teacher",
        description="Where the student's weights start: `teacher`, its kept layers, embeddings and head copied "
        "from the teacher (an ensemble's first member) where names and shapes fit (DistilBERT; PKD, Sun et al. "
        "2019); `base`, the base model's pretrained layers and a new head.",
    )

    def references(self, job: JobSpec) -> Iterator[Reference]:
        if self.unlabeled is not None:
            text_field = self.unlabeled_text_field or job.text_field
            yield DatasetRef("unlabeled", self.unlabeled, (text_field,), limit=self.max_unlabeled)


class ContrastivePairs(Strict):
    """SetFit's first step (Tunstall et al. 2022): before the head trains, the encoder is fine-tuned
    on sentence pairs built from the labeled rows, two texts of one class pulled together and of two
    classes pushed apart (cosine-similarity loss), which is what few labeled rows can teach best."""

    pairs_per_example: int = Field(
        20,
        ge=1,
        le=100,
        description="Iterations R of SetFit's pair generation: each one gives every row one positive pair (a row "
        "of its class) and one negative (a row of another), so there are 2 x R x rows pairs.",
    )
    max_pairs: int | None = Field(
        None, ge=2, description="Use at most this many pairs (drawn evenly from the iterations); null: all."
    )
    epochs: int = Field(1, ge=1, le=20, description="Passes over the pairs.")
    learning_rate: float = Field(2e-5, gt=0, le=1, description="Peak learning rate of the encoder (linear decay).")
    batch_size: int = Field(16, ge=1, le=1024, description="Pairs per step (each step encodes twice as many texts).")
