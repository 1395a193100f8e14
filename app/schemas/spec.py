"""The adaptation job spec: what a client submits, and what the job record stores fully expanded.

Names follow the NAACL 2019 "Transfer Learning in NLP" tutorial as mapped in DESIGN.md. Every
choice that names a registered engine unit (pooling, head, schedule, ...) is a Literal of (or a
discriminated union over) the registry's names; tests/adaptation/test_registry.py checks that the
spec and the registries agree. Units with options accept the bare name as shorthand:
`"lr_schedule": "cosine"` means `{"name": "cosine"}`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, HttpUrl, model_validator

from app.schemas.signal import AuxiliaryTask, Consistency, Distillation, Proportional, SliceSpec, Stage, TaskSampling
from app.schemas.spec_base import ByName, Named, Strict


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
        default_factory=lambda: ["query", "value"], min_length=1, description="Linear layers that get LoRA."
    )


# Module names that adapters wrap (BERT naming); LoRA on the same modules would wrap them twice.
ADAPTER_WRAPPED_MODULES = {"dense"}


class ModelConfig(Strict):
    pooling: Literal["mean", "cls", "max", "scalar_mix"] = Field(
        "mean",
        description="How token vectors become one vector per text; scalar_mix is a learned softmax-weighted "
        "sum of every layer, times a learned scale (ELMo), then mean-pooled.",
    )
    head: Literal["linear", "mlp"] = Field("linear", description="Task layer on top of the pooled vector.")
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


class Constant(Named):
    name: Literal["constant"] = "constant"


class LinearWarmup(Named):
    name: Literal["linear_warmup"] = "linear_warmup"
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="Share of steps spent warming up.")


class SlantedTriangular(Named):
    name: Literal["slanted_triangular"] = "slanted_triangular"
    cut_frac: float = Field(0.1, gt=0, lt=1, description="Share of steps spent increasing (Howard & Ruder 2018).")
    ratio: float = Field(32, ge=1, description="How much smaller the lowest rate is than the peak.")


class Cosine(Named):
    name: Literal["cosine"] = "cosine"
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="Share of steps spent warming up.")


LrSchedule = Annotated[Constant | LinearWarmup | SlantedTriangular | Cosine, Field(discriminator="name"), ByName]


class NoUnfreezing(Named):
    name: Literal["none"] = "none"


class TopOnly(Named):
    name: Literal["top_only"] = "top_only"


class Gradual(Named):
    name: Literal["gradual"] = "gradual"
    every_steps: int | None = Field(
        None, ge=1, description="Unfreeze one more group every this many steps; null: once per epoch (ULMFiT)."
    )
    thaw_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Spread the unfreezing evenly over this share of the run, whatever the model's depth, so "
        "that every group trains from then on; null: once per epoch, or every_steps.",
    )

    @model_validator(mode="after")
    def _one_pace(self) -> Gradual:
        if self.every_steps is not None and self.thaw_fraction is not None:
            raise ValueError("gradual unfreezing takes every_steps or thaw_fraction, not both (set the other to null)")
        return self


class ChainThaw(Named):
    name: Literal["chain_thaw"] = "chain_thaw"


class Sequential(Named):
    name: Literal["sequential"] = "sequential"
    new_epochs: int = Field(1, ge=1, description="Epochs training only the new parameters.")
    body_epochs: int = Field(1, ge=1, description="Then epochs training all but the embeddings.")


Unfreezing = Annotated[NoUnfreezing | TopOnly | Gradual | ChainThaw | Sequential, Field(discriminator="name"), ByName]


class L2SP(Named):
    name: Literal["l2_sp"] = "l2_sp"
    alpha: float = Field(0.01, ge=0, description="Pull of pretrained weights toward their starting point.")
    beta: float = Field(0.01, ge=0, description="Plain L2 on the new weights (Li et al. 2018).")


class EWC(Named):
    name: Literal["ewc"] = "ewc"
    weight: float = Field(1.0, ge=0, description="lambda: strength of the Fisher-weighted pull.")
    fisher_data: str = Field(description="Dataset whose text estimates the Fisher (masked-LM objective).")
    fisher_batches: int = Field(16, ge=1, le=10_000, description="Batches used for the estimate.")


class SourceDistillation(Named):
    name: Literal["source_distillation"] = "source_distillation"
    source_model: str = Field(description="Id of a trained model with the same labels whose predictions anchor.")
    weight: float = Field(1.0, ge=0, description="Weight of the KL term.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of both distributions.")


Regularizer = Annotated[L2SP | EWC | SourceDistillation, Field(discriminator="name"), ByName]


class OptimizationConfig(Strict):
    train: Literal["all", "head_only", "adapters", "lora"] = Field(
        "all",
        description="Which weights train: all (fine-tuning), head_only (frozen encoder: feature extraction), "
        "adapters (with model.adapters), lora (with model.lora).",
    )
    unfreezing: Unfreezing = Field(default_factory=NoUnfreezing, description="When each layer group trains.")
    discriminative_decay: float | None = Field(
        None, ge=1, description="Group l gets lr / decay^(distance from the top); 2.6 in ULMFiT; null: off."
    )
    lr_schedule: LrSchedule = Field(default_factory=LinearWarmup, description="Learning rate over the run.")
    regularizers: list[Regularizer] = Field(default_factory=list, description="Penalties added to the loss.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW decoupled weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null for none.")


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


class JobSpec(Strict):
    base_model: str = Field("minilm-l6", description="Catalog id of the pretrained encoder.")
    recipe: str = Field("fine_tuning", description="Named recipe the rest of the spec overrides.")
    data: DataRefs
    text_field: str = Field("text", min_length=1, description="Column holding the text.")
    text_fields: list[str] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Sentence pairs: two columns encoded as the base model's pair input (instead of text_field).",
    )
    label_field: str = Field("label", min_length=1, description="Column holding the label.")
    task: Literal["single_label", "multi_label"] = Field(
        "single_label", description="multi_label: several labels per text (a JSON list, or one delimited string)."
    )
    label_delimiter: str = Field("|", min_length=1, max_length=5, description="multi_label: separates labels.")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="multi_label: probability above which a label is predicted; null: tuned."
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
        default_factory=Proportional,
        description="Which task each step trains (one task and batch per step): proportional to its batches, "
        "uniform, or temperature-scaled.",
    )
    main_task_epochs: int = Field(
        0, ge=0, le=100, description="With tasks: then this many epochs on the main task alone."
    )
    consistency: Consistency | None = Field(None, description="Semi-supervised consistency on unlabeled text (UDA).")
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

    @property
    def trains_own_encoder(self) -> bool:
        """Whether the encoder the head sits on differs from the base model's (stages or a cut student),
        so that the artifact must hold every weight."""
        return bool(self.stages) or self.student_layers is not None

    @model_validator(mode="after")
    def _coherent(self) -> JobSpec:
        if self.label_field in self.input_fields:
            raise ValueError("text_field and label_field must name different columns")
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
        if self.teacher is None and (self.student_layers is not None or self.distillation is not None):
            raise ValueError("student_layers and distillation need a teacher (the id of a trained model)")
        if self.ensemble is not None and self.teacher is not None:
            raise ValueError("a job is an ensemble or a distilled student, not both: distil from an ensemble instead")


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

# Unfreezing schedules whose trainable set stays the same for the whole run: DDP reduces the
# parameters that require grad when it is built, so a set that changes mid-run cannot train with it.
STATIC_UNFREEZING = {"none", "top_only"}


def undistributable_options(spec: JobSpec) -> list[str]:
    """The options of `spec` that do not train in several processes (app/adaptation/distributed.py):
    a trainable set that changes (unfreezing schedules), steps whose forward pass differs from step to
    step (auxiliary tasks, slices, consistency, distillation), and jobs of several runs (stages,
    ensembles)."""
    refused = [name for name in ("stages", "tasks", "slices") if getattr(spec, name)]
    refused += [name for name in ("ensemble", "consistency", "teacher") if getattr(spec, name) is not None]
    if spec.optimization.unfreezing.name not in STATIC_UNFREEZING:
        refused.append(f"optimization.unfreezing {spec.optimization.unfreezing.name!r}")
    return refused


def labels_of(value: str | list[str], spec: JobSpec) -> list[str]:
    """A row's label cell as the task reads it: multi_label takes a list, or splits a delimited string."""
    if spec.task == "single_label":
        return [value] if isinstance(value, str) else [spec.label_delimiter.join(value)]
    names = value if isinstance(value, list) else value.split(spec.label_delimiter)
    return [name.strip() for name in names if name.strip()]
