"""The adaptation job spec: what a client submits, and what the job record stores fully expanded.

Names follow the NAACL 2019 "Transfer Learning in NLP" tutorial as mapped in DESIGN.md. Every
choice that names a registered engine unit is built from the engine's registry (registry.py): a
unit with options (lr schedule, unfreezing, regularizer, ...) brings its own options model into a
union discriminated by `name`, and a unit without options (pooling, head, ...) is one of a Literal's
names, described by its module's docstring. Units with options accept the bare name as shorthand:
`"lr_schedule": "cosine"` means `{"name": "cosine"}`.

What a spec reads besides its settings (datasets, trained models) each part declares itself
(`references`, app/schemas/references.py); `JobSpec.dataset_refs()` and `model_refs()` list them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field, HttpUrl, model_validator

from app.adaptation.registry import unit_choice, unit_descriptions
from app.adaptation.regularizers import REGULARIZERS
from app.adaptation.sampling import SAMPLINGS
from app.adaptation.schedules import SCHEDULES
from app.adaptation.unfreezing import UNFREEZING
from app.schemas.references import DatasetRef, ModelRef, Reference, Referencing, under
from app.schemas.signal import (
    AuxiliaryTask,
    Consistency,
    ContrastivePairs,
    Distillation,
    SliceSpec,
    Stage,
    TaskSampling,
)
from app.schemas.spec_base import Strict


class DataRefs(Strict):
    train: str = Field(description="Id of the labeled training dataset.")
    validation: str | None = Field(
        None,
        description="Id of the validation dataset; without it a stratified `validation_fraction` "
        "of train is held out (and reported) instead.",
    )
    test: str | None = Field(
        None, description="Optional test dataset, evaluated once with the kept model and reported."
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="Share of train held out when no validation set is given; 0: no validation at all, "
        "every row trains and the last epoch is kept.",
    )

    @property
    def has_validation(self) -> bool:
        return self.validation is not None or self.validation_fraction > 0

    def references(self, job: JobSpec) -> Iterator[Reference]:
        fields = tuple(job.input_fields)
        yield DatasetRef("train", self.train, fields, job.label_field, "training a classifier", task_data=True)
        for part in ("validation", "test"):
            if (dataset_id := getattr(self, part)) is not None:
                yield DatasetRef(part, dataset_id, fields, job.label_field, "evaluating the classifier", task_data=True)


# ---- architecture: what sits on and inside the encoder --------------------------------------------


class AdapterConfig(Strict):
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby",
        description="houlsby: after attention and after the feed-forward of every layer (Houlsby et al. 2019); "
        "pfeiffer: after the feed-forward only (Pfeiffer et al. 2020).",
    )
    size: int = Field(64, ge=1, le=4096, description="Bottleneck width.")


class LoraConfig(Strict):
    r: int = Field(8, ge=1, le=512, description="Rank of the low-rank update (Hu et al. 2021).")
    alpha: float = Field(16, gt=0, description="Scale: the update is multiplied by alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description=(
            "Linear layers that get LoRA: `query`, `key` and `value` name the attention projections of "
            "whatever encoder family the base model is (ModernBERT's fused `Wqkv` for any of them); "
            "any other name is a module name, matched as peft matches it."
        ),
    )


# Module names that adapters wrap (BERT naming); LoRA on the same modules would wrap them twice.
ADAPTER_WRAPPED_MODULES = {"dense"}


Pooling = unit_choice("app.adaptation.pooling")
Head = unit_choice("app.adaptation.heads")
TrainStrategy = unit_choice("app.adaptation.strategies")
TaskType = unit_choice("app.adaptation.tasks")


class ModelConfig(Strict):
    pooling: Pooling = Field(
        "mean",
        description=unit_descriptions("app.adaptation.pooling", "How token vectors become one vector per text."),
    )
    head: Head = Field(
        "linear", description=unit_descriptions("app.adaptation.heads", "Task layer on top of the pooled vector.")
    )
    head_hidden: int = Field(256, ge=1, le=8192, description="Hidden width of the mlp head.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the head.")
    adapters: AdapterConfig | None = Field(None, description="Bottleneck adapters inside every layer.")
    lora: LoraConfig | None = Field(None, description="LoRA updates on chosen linear layers (via peft).")

    @model_validator(mode="after")
    def _no_double_wrapping(self) -> ModelConfig:
        if self.adapters and self.lora and ADAPTER_WRAPPED_MODULES & set(self.lora.target_modules):
            raise ValueError(
                "adapters and lora would both wrap the same modules "
                f"({', '.join(sorted(ADAPTER_WRAPPED_MODULES & set(self.lora.target_modules)))}); "
                "choose lora.target_modules outside them"
            )
        return self


# ---- optimization: which weights, when, how hard -------------------------------------------------


LrSchedule = SCHEDULES.union()
Unfreezing = UNFREEZING.union()
Regularizer = REGULARIZERS.union()


class OptimizationConfig(Strict):
    train: TrainStrategy = Field(
        "all",
        description=unit_descriptions(
            "app.adaptation.strategies",
            "Which weights train (adapters needs model.adapters, lora needs model.lora).",
        ),
    )
    unfreezing: Unfreezing = Field(
        default_factory=UNFREEZING.default("none"), description="When each layer group trains."
    )
    discriminative_decay: float | None = Field(
        None, ge=1, description="Group l gets lr / decay^(distance from the top); 2.6 in ULMFiT; null: off."
    )
    lr_schedule: LrSchedule = Field(
        default_factory=SCHEDULES.default("linear_warmup"), description="Learning rate over the run."
    )
    regularizers: list[Regularizer] = Field(default_factory=list, description="Penalties added to the loss.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW decoupled weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null for none.")
    head_fit: Literal["minibatch", "lbfgs"] = Field(
        "minibatch",
        description=(
            "How a head over cached frozen features trains: `minibatch` (AdamW over batches, as every "
            "other run) or `lbfgs` (each epoch is 10 iterations of full-batch L-BFGS over every cached "
            "example, dropout off, an L2 penalty on the head's weights as heavy as one example's loss, the "
            "scalar mix's scale fixed, training.learning_rate its initial step with a strong-Wolfe line search). "
            "Only where the features are cached (optimization.train head_only, nothing reading the tokens); "
            "elsewhere minibatch."
        ),
    )


MAX_JOB_GPUS = 8  # on one node


class Compute(Strict):
    """What the job needs to train: it decides the queue (cpu, gpu, or a GPU class) and the processes."""

    gpus: int = Field(
        0, ge=0, le=MAX_JOB_GPUS, description="GPUs on one node; 2 or more train with DistributedDataParallel."
    )
    gpu_class: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,39}$",
        description="A GPU class the operator names (THAW_GPU_CLASSES, e.g. a100): the job waits for that queue.",
    )
    processes: int | None = Field(
        None,
        ge=1,
        le=8,
        description="Training processes (DistributedDataParallel, torchrun); default: one per GPU, else 1. On CPU, "
        "2 or more train with the gloo backend. training.batch_size is per process: a step trains on processes x "
        "batch_size examples. Not with stages, tasks, slices, ensemble, consistency, teacher, or an unfreezing "
        "schedule other than none or top_only.",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Compute:
        if self.gpu_class is not None and self.gpus == 0:
            raise ValueError("compute.gpu_class needs compute.gpus of 1 or more")
        if self.gpus and self.processes is not None and self.processes != self.gpus:
            raise ValueError(f"compute.processes must equal compute.gpus ({self.gpus}): one process per GPU")
        return self

    @property
    def world_size(self) -> int:
        """How many training processes the job runs."""
        return self.processes or max(self.gpus, 1)

    @property
    def route(self) -> str:
        """The job's queue: its GPU class, else `gpu` or `cpu`."""
        return self.gpu_class or ("gpu" if self.gpus else "cpu")


class TrainingConfig(Strict):
    epochs: int = Field(3, ge=1, le=100, description="Passes over the training data.")
    batch_size: int = Field(
        32, ge=1, le=1024, description="Examples per optimisation step, in each process (compute.processes)."
    )
    learning_rate: float = Field(1e-4, gt=0, le=1, description="Peak learning rate (AdamW).")
    max_length: int = Field(64, ge=4, le=512, description="Tokens kept per text (longer are cut).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for split, init, order and dropout.")
    eval_metric: Literal["accuracy", "macro_f1", "micro_f1"] = Field(
        "accuracy", description="Validation metric that picks the kept epoch (micro_f1: multi_label only)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement; null: never."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Compute dtype of training and validation: bf16 autocast (weights stay fp32); auto: bf16 "
        "where the hardware has it natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs from Ampere), else fp32.",
    )
    cache_frozen_layers: bool = Field(
        True,
        description="Unfreezing schedules: the groups frozen below the lowest trainable one (embeddings, bottom "
        "layers) run in eval mode, without dropout (with false they keep dropout, as in plain fine-tuning), so "
        "their output is a function of the text alone; where the schedule keeps the same groups frozen below for "
        "more than an epoch, that output is computed once per example, kept in RAM as fp16 and reused at every "
        "step. Not cached (an event says why) with pooling scalar_mix, regularizers that read the tokens, or "
        "over frozen_cache_mb.",
    )
    refit: bool = Field(
        True,
        description="With validation held out from train (no data.validation given): the kept epoch is chosen on "
        "the held-out rows, then a fresh model trains on every training row for that many epochs, and that model is "
        "the job's (its validation metrics are the choosing run's). false: the model trained on the rest is kept.",
    )
    calibrate: bool = Field(
        True,
        description="single_label: fit a temperature on the validation rows (Guo et al. 2017) and fold it into the "
        "head, so predicted scores are calibrated probabilities; the card reports ECE before and after.",
    )
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        None,
        description="single_label: weigh each class's loss. balanced: n / (classes x count of the class), as "
        "scikit-learn; or {label: weight} (labels left out weigh 1); null: every example weighs the same.",
    )
    frozen_cache_mb: int = Field(
        1024,
        ge=0,
        description="RAM budget of the frozen-layer cache (real tokens x hidden size x 2 bytes for the training "
        "set); a larger cache is not built and the frozen layers run at every step.",
    )


class Webhook(Strict):
    """Where the service announces the job's end (app/services/webhooks.py)."""

    url: HttpUrl = Field(
        description="http(s) URL that gets a signed POST (headers Thaw-Event, Thaw-Delivery, Thaw-Signature) when "
        "the job succeeds, fails or is cancelled, retried with backoff until it answers 2xx; redirects are not "
        "followed. Its host must be one the operator allows (THAW_WEBHOOK_ALLOWED_HOSTS)."
    )


class RecipeChoice(Strict):
    """What recipe `auto` chose for the job's training data, and why (app/schemas/recipes.py)."""

    requested: Literal["auto"] = "auto"
    recipe: str = Field(description="The recipe chosen.")
    reason: str = Field(description="The rule that chose it, with the counts it read.")
    rows: int | None = Field(None, description="Labeled training rows counted.")
    classes: int | None = Field(None, description="Classes among them.")


class JobSpec(Strict):
    base_model: str = Field("minilm-l6", description="Catalog id of the pretrained encoder.")
    recipe: str = Field(
        "auto",
        description="Named recipe the rest of the spec overrides; auto (the default when none is named) chooses "
        "setfit or fine_tuning from the training data's rows per class, and the job stores the recipe it chose.",
    )
    recipe_choice: RecipeChoice | None = Field(
        None, description="Set by the service: what auto chose and why (a value sent is replaced)."
    )
    data: DataRefs
    text_field: str = Field("text", min_length=1, description="Column holding the text.")
    text_fields: list[str] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Sentence pairs: two columns encoded as the base model's pair input (instead of text_field).",
    )
    label_field: str = Field("label", min_length=1, description="Column holding the label.")
    task: TaskType = Field(
        "single_label",
        description=unit_descriptions(
            "app.adaptation.tasks", "multi_label: several labels per text (a JSON list, or one delimited string)."
        ),
    )
    label_delimiter: str = Field("|", min_length=1, max_length=5, description="multi_label: separates labels.")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="multi_label: probability above which a label is predicted; null: tuned."
    )
    abstain_below: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="single_label: a prediction whose top score is under this returns label null (with its "
        "scores); a predict request may set its own. null: always a label.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimization: OptimizationConfig = Field(default_factory=OptimizationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    # ---- more signal (signal.py): every option composes with any recipe ----
    stages: list[Stage] = Field(
        default_factory=list, max_length=8, description="Run in order before the main task; weights flow on."
    )
    tasks: list[AuxiliaryTask] = Field(
        default_factory=list, max_length=8, description="Auxiliary tasks trained jointly with the main one."
    )
    task_sampling: TaskSampling = Field(
        default_factory=SAMPLINGS.default("proportional"),
        description="Which task each step trains (one task and batch per step): proportional to its batches, "
        "uniform, or temperature-scaled.",
    )
    main_task_epochs: int = Field(
        0, ge=0, le=100, description="With tasks: then this many epochs on the main task alone."
    )
    consistency: Consistency | None = Field(None, description="Semi-supervised consistency on unlabeled text (UDA).")
    contrastive: ContrastivePairs | None = Field(
        None, description="Contrastive sentence-pair fine-tuning of the encoder on the labeled rows (SetFit), first."
    )
    slices: list[SliceSpec] = Field(
        default_factory=list, max_length=16, description="Named subsets with their own head and metrics."
    )
    ensemble: Ensemble | None = Field(
        None,
        description="Train several members as one job, served as the mean of their probabilities. Submit "
        '{"size": N} (members differ by seed) or {"members": [partial specs laid over this one]}.',
    )
    teacher: str | None = Field(None, description="Distillation: id of a trained model (an ensemble too).")
    student_layers: int | None = Field(
        None, ge=1, le=48, description="Distillation: cut the base model to this many evenly spaced layers."
    )
    distillation: Distillation | None = Field(None, description="Distillation settings; null: the defaults.")
    webhook: Webhook | None = Field(None, description="A URL told when the job ends; null: none.")
    compute: Compute = Field(default_factory=Compute, description="GPUs and processes; they choose the queue.")

    @property
    def input_fields(self) -> list[str]:
        return self.text_fields or [self.text_field]

    @property
    def distilling(self) -> Distillation | None:
        """The distillation settings when the job has a teacher, else None."""
        return (self.distillation or Distillation()) if self.teacher is not None else None

    def references(self) -> Iterator[Reference]:
        """Every dataset and model this spec reads, its ensemble members' included, each with the
        path of the field that names it."""
        for name in type(self).model_fields:
            yield from _references_in(getattr(self, name), name, self)
        if self.teacher is not None:
            yield ModelRef("teacher", self.teacher, "teacher", self.base_model)

    def dataset_refs(self) -> list[DatasetRef]:
        return [ref for ref in self.references() if isinstance(ref, DatasetRef)]

    def model_refs(self) -> list[ModelRef]:
        return [ref for ref in self.references() if isinstance(ref, ModelRef)]

    @property
    def trains_own_encoder(self) -> bool:
        """Whether the encoder the head sits on differs from the base model's (stages or a cut student),
        so that the artifact must hold every weight."""
        from_teacher = self.distilling is not None and self.distilling.student_init == "teacher"
        return bool(self.stages) or self.student_layers is not None or self.contrastive is not None or from_teacher

    @model_validator(mode="after")
    def _coherent(self) -> JobSpec:
        if self.label_field in self.input_fields:
            raise ValueError("text_field and label_field must name different columns")
        if self.task != "single_label":
            for name, value in (
                ("abstain_below", self.abstain_below),
                ("training.class_weights", self.training.class_weights),
            ):
                if value:
                    raise ValueError(f"{name} applies to task 'single_label' only (multi_label has its thresholds)")
        if isinstance(self.training.class_weights, dict) and any(w <= 0 for w in self.training.class_weights.values()):
            raise ValueError("training.class_weights: every weight must be above 0")
        if self.task != "multi_label" and (self.threshold is not None or self.training.eval_metric == "micro_f1"):
            raise ValueError("threshold and eval_metric 'micro_f1' apply to task 'multi_label' only")
        if not self.data.has_validation and self.training.early_stopping_patience is not None:
            raise ValueError("training.early_stopping_patience needs validation data (data.validation_fraction is 0)")
        if not self.data.has_validation and self.task == "multi_label" and self.threshold is None:
            raise ValueError("multi_label without validation data (data.validation_fraction 0) needs a threshold")
        train, schedule = self.optimization.train, self.optimization.unfreezing.name
        if schedule != "none" and train != "all":
            raise ValueError(
                f"optimization.unfreezing {schedule!r} decides which layers train over time, which needs "
                f"optimization.train 'all', not {train!r}"
            )
        if train == "adapters" and self.model.adapters is None:
            raise ValueError('optimization.train \'adapters\' needs model.adapters (e.g. {"placement": "houlsby"})')
        if train == "lora" and self.model.lora is None:
            raise ValueError("optimization.train 'lora' needs model.lora (e.g. {\"r\": 8})")
        self._coherent_signal()
        self._coherent_compute()
        return self

    def _coherent_compute(self) -> None:
        refused = undistributable_options(self)
        if self.compute.world_size > 1 and refused:
            field = "compute.processes" if self.compute.processes is not None else "compute.gpus"
            raise ValueError(
                f"{field}: {self.compute.world_size} processes train with DistributedDataParallel, which does not "
                f"combine with {', '.join(refused)}; train this job with one process"
            )

    def _coherent_signal(self) -> None:
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("tasks: every task needs its own name")
        if len({s.name for s in self.slices}) != len(self.slices):
            raise ValueError("slices: every slice needs its own name")
        if self.main_task_epochs and not any(task.data for task in self.tasks):
            raise ValueError("main_task_epochs finishes a multi-task run: it needs tasks with data")
        if self.task != "single_label":
            if self.consistency is not None or self.teacher is not None:
                raise ValueError("consistency and distillation (teacher) apply to task 'single_label' only")
        if self.contrastive is not None and (self.task != "single_label" or self.text_fields):
            raise ValueError("contrastive pairs (setfit) apply to task 'single_label' on one text field")
        if self.teacher is None and (self.student_layers is not None or self.distillation is not None):
            raise ValueError("student_layers and distillation need a teacher (the id of a trained model)")
        if self.ensemble is not None and self.teacher is not None:
            raise ValueError("a job is an ensemble or a distilled student, not both: distil from an ensemble instead")


def _references_in(value: object, path: str, job: JobSpec) -> Iterator[Reference]:
    """The references of one field's value: a part of the spec that declares them, a list of parts,
    or (an ensemble's members, a stage's job) a spec of its own, walked with itself as the job."""
    if isinstance(value, JobSpec):
        yield from under(path, value.references())
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references_in(item, f"{path}.{index}", job)
    elif isinstance(value, BaseModel):
        if isinstance(value, Referencing):
            yield from under(path, value.references(job))
        for name in type(value).model_fields:
            if not (isinstance(value, Stage) and name == "job"):  # a stage's job reads the stage's own data
                yield from _references_in(getattr(value, name), f"{path}.{name}", job)


MEMBER_WEBHOOK = "the job's webhook announces the whole ensemble; set it on the job, not on a member"


class Ensemble(Strict):
    members: list[JobSpec] = Field(
        min_length=2, max_length=10, description="Each member's whole spec (the job record keeps them expanded)."
    )

    @model_validator(mode="after")
    def _plain_members(self) -> Ensemble:
        for index, member in enumerate(self.members):
            if member.ensemble is not None or member.teacher is not None:
                raise ValueError(f"ensemble.members.{index}: a member cannot be an ensemble or a distilled student")
            if member.webhook is not None:
                raise ValueError(f"ensemble.members.{index}.webhook: {MEMBER_WEBHOOK}")
        return self


JobSpec.model_rebuild()
Stage.model_rebuild(_types_namespace={"JobSpec": JobSpec})
JobSpec.model_rebuild(force=True)

# Unfreezing schedules whose trainable set stays the same for the whole run: DDP reduces the
# parameters that require grad when it is built, so a set that changes mid-run cannot train with it.
STATIC_UNFREEZING = {"none", "top_only"}


def undistributable_options(spec: JobSpec) -> list[str]:
    """The options of `spec` that do not train in several processes (app/adaptation/distributed.py):
    a trainable set that changes (unfreezing schedules), steps whose forward pass differs from step to
    step (auxiliary tasks, slices, consistency, distillation), and jobs of several runs (stages,
    ensembles)."""
    refused = [name for name in ("stages", "tasks", "slices") if getattr(spec, name)]
    refused += [
        name for name in ("ensemble", "consistency", "teacher", "contrastive") if getattr(spec, name) is not None
    ]
    if spec.optimization.unfreezing.name not in STATIC_UNFREEZING:
        refused.append(f"optimization.unfreezing {spec.optimization.unfreezing.name!r}")
    return refused


def task_label(value: str | list[str], spec: JobSpec) -> str | tuple[str, ...]:
    """A row's label cell as the engine takes it: a name (single_label) or a tuple of names."""
    names = labels_of(value, spec)
    return tuple(names) if spec.task == "multi_label" else names[0]


def labels_of(value: str | list[str], spec: JobSpec) -> list[str]:
    """A row's label cell as the task reads it: multi_label takes a list, or splits a delimited string."""
    if spec.task == "single_label":
        return [value] if isinstance(value, str) else [spec.label_delimiter.join(value)]
    names = value if isinstance(value, list) else value.split(spec.label_delimiter)
    return [name.strip() for name in names if name.strip()]
