"""Named recipes: each is data, a few overrides of the job spec (nanoGPT-style config files).

A submitted spec is laid over its recipe, so anything the recipe sets can be overridden; the job
record keeps the expansion, so a run can be reproduced without knowing the recipe.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.schemas.spec import MEMBER_WEBHOOK, JobSpec, RecipeChoice

RECIPES: dict[str, dict[str, Any]] = {
    # Devlin et al. 2019: pooled vector + linear classifier, every weight trains, warm-up then decay.
    "fine_tuning": {
        "optimization": {"train": "all", "lr_schedule": "linear_warmup"},
    },
    # Peters et al. 2019 "To tune or not to tune": a frozen encoder whose layers an ELMo-style scalar
    # mix combines; only the mix and the head learn, on features computed once per example.
    "feature_extraction": {
        "model": {"pooling": "scalar_mix"},
        # The head (and the mix) fit by full-batch L-BFGS on the cached features: a logistic
        # regression's usual solver, a fraction of the one forward pass's cost (benchmarks/training.py).
        "optimization": {"train": "head_only", "lr_schedule": "constant", "head_fit": "lbfgs"},
        "training": {"learning_rate": 1.0, "epochs": 20},
    },
    # Houlsby et al. 2019: bottleneck adapters after attention and feed-forward; the rest is frozen.
    "adapters": {
        "model": {"adapters": {"placement": "houlsby", "size": 64}},
        "optimization": {"train": "adapters"},
        "training": {"learning_rate": 1e-3, "epochs": 5},
    },
    # Hu et al. 2021: low-rank updates of the attention projections, through peft.
    "lora": {
        "model": {"lora": {"r": 8, "alpha": 16, "target_modules": ["query", "key", "value"]}},
        "optimization": {"train": "lora"},
        "training": {"learning_rate": 3e-3, "epochs": 5},
    },
    # Howard & Ruder 2018: gradual unfreezing, discriminative rates (decay 2.6) and slanted triangular lr.
    # The paper thaws one group per epoch and then trains them all; a 6-layer encoder has 8 groups,
    # so the recipe thaws them evenly over the first quarter of the run and trains all after that.
    # The peak rate is the top group's; with decay 2.6 the embeddings get 2.6^7 ~ 800 times less.
    "ulmfit": {
        "optimization": {
            "train": "all",
            "unfreezing": {"name": "gradual", "thaw_fraction": 0.25},
            "discriminative_decay": 2.6,
            "lr_schedule": {"name": "slanted_triangular", "cut_frac": 0.1, "ratio": 32},
        },
        "training": {"learning_rate": 2e-3, "epochs": 5},
    },
    # Felbo et al. 2017 (DeepMoji): new layers alone, then each layer alone bottom-up, then all, at a
    # constant rate; 1e-4 is their `next_lr`, the rate of every phase that fine-tunes.
    "chain_thaw": {
        "optimization": {"train": "all", "unfreezing": {"name": "chain_thaw"}, "lr_schedule": "constant"},
        "training": {"learning_rate": 1e-4, "epochs": 4},
    },
    # Chronopoulou et al. 2019: new parameters first, then all but the embeddings, then everything.
    "sequential_unfreezing": {
        "optimization": {"train": "all", "unfreezing": {"name": "sequential", "new_epochs": 1, "body_epochs": 1}},
        "training": {"epochs": 4},
    },
    # Only the new layers and the top encoder layer train.
    "top_only": {
        "optimization": {"train": "all", "unfreezing": "top_only"},
        "training": {"learning_rate": 5e-4},
    },
    # Tunstall et al. 2022 (SetFit): the encoder tuned on sentence pairs of the labeled rows (contrastive,
    # CosineSimilarityLoss, R = 20, lr 2e-5, batch 16, one epoch), then a linear head on its mean-pooled
    # vectors. SetFit keeps no rows for validation: few-shot rows are too few to spare.
    "setfit": {
        "data": {"validation_fraction": 0},
        "model": {"pooling": "mean", "dropout": 0.0},
        "contrastive": {},
        "optimization": {"train": "head_only", "lr_schedule": "constant"},
        "training": {"learning_rate": 1e-2, "epochs": 50},
    },
    # Li et al. 2018: fine-tuning pulled toward the pretrained starting point.
    "l2_sp": {
        "optimization": {"train": "all", "regularizers": [{"name": "l2_sp", "alpha": 0.01, "beta": 0.01}]},
    },
    # Kirkpatrick et al. 2017: the pull is weighted by the Fisher; the spec names its data set
    # (optimization.regularizers[0].fisher_data).
    "ewc": {
        "optimization": {"train": "all", "regularizers": [{"name": "ewc", "weight": 100.0}]},
    },
}


AUTO = "auto"  # the recipe of a spec that names none: chosen from the training data (choose_recipe)
# Measured in benchmarks/setfit.py: below about this many labeled rows per class, setfit beats fine_tuning.
SETFIT_BELOW_ROWS_PER_CLASS = 50


def choose_recipe(raw: dict[str, Any], label_counts: dict[str, int] | None) -> RecipeChoice:
    """What `auto` runs, and why: setfit for few rows per class of one text field and one label,
    fine_tuning otherwise (including when the training data's counts are unknown)."""
    if label_counts is None:
        return RecipeChoice(recipe="fine_tuning", reason="the training data's label counts are unknown")
    classes, rows = len(label_counts), sum(label_counts.values())
    per_class = rows / max(classes, 1)
    where = f"{rows} training rows over {classes} classes ({per_class:.0f} per class)"
    if raw.get("task", "single_label") != "single_label" or raw.get("text_fields"):
        return RecipeChoice(recipe="fine_tuning", reason=f"{where}; setfit takes one text field and one label")
    compute = raw.get("compute") if isinstance(raw.get("compute"), dict) else {}
    if any(isinstance(compute.get(key), int) and compute[key] > 1 for key in ("gpus", "processes")):
        return RecipeChoice(recipe="fine_tuning", reason=f"{where}; setfit trains in one process")
    if per_class < SETFIT_BELOW_ROWS_PER_CLASS:
        return RecipeChoice(
            recipe="setfit",
            reason=f"{where}: under {SETFIT_BELOW_ROWS_PER_CLASS} per class, contrastive pairs (setfit) learn more",
            rows=rows,
            classes=classes,
        )
    return RecipeChoice(
        recipe="fine_tuning",
        reason=f"{where}: {SETFIT_BELOW_ROWS_PER_CLASS} or more per class, fine-tuning every weight learns more",
        rows=rows,
        classes=classes,
    )


class SpecError(ValueError):
    """A spec that cannot be expanded; the message names the bad field."""


class UnknownRecipe(SpecError):
    pass


def describe(error: ValidationError, where: str = "") -> str:
    """pydantic's errors as `field.path: message; ...`, each path prefixed by `where`."""
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        parts.append(f"{'.'.join(p for p in (where, path) if p) or 'spec'}: {item['msg']}")
    return "; ".join(parts)


def deep_merge(base: Any, override: Any) -> Any:
    """Lay `override` over `base`: objects merge key by key; a list of objects merges item by item
    and keeps the override's length (so `[{"fisher_data": ...}]` completes a recipe's regularizer,
    and `[]` removes them); a bare unit name keeps the recipe's options for that unit; anything else
    is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: deep_merge(base[k], v) if k in base else v for k, v in override.items()}}
    if isinstance(base, list) and isinstance(override, list) and all(isinstance(o, dict) for o in override):
        return [deep_merge(b, o) for b, o in zip(base, override, strict=False)] + override[len(base) :]
    if isinstance(base, dict) and base.get("name") == override:
        return base
    return override


def expand(raw: dict[str, Any], label_counts: dict[str, int] | None = None) -> JobSpec:
    """Lay a submitted spec over its recipe and validate the result, with its stages and ensemble
    members. A spec naming no recipe (or `auto`) gets the one `choose_recipe` picks from the training
    data's `label_counts`; the stored spec names it, and `recipe_choice` says why."""
    name = raw.get("recipe", AUTO)
    if not isinstance(name, str):
        return JobSpec.model_validate(raw)  # pydantic names the bad `recipe` field
    choice = None
    if name == AUTO:
        choice = choose_recipe(raw, label_counts)
        name = choice.recipe
    raw = {**raw, "recipe": name, "recipe_choice": None if choice is None else choice.model_dump()}
    if name not in RECIPES:
        raise UnknownRecipe(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    if isinstance(raw.get("ensemble"), dict):
        raw = {**raw, "ensemble": {"members": _ensemble_members(raw)}}
    return with_stage_jobs(JobSpec.model_validate(deep_merge(RECIPES[name], raw)))


def with_stage_jobs(spec: JobSpec) -> JobSpec:
    """`spec` with the job of every stage expanded (`Stage.job`), its ensemble members' too, so that
    the stored spec is the whole of what runs and the engine never reads the recipe table. Also
    completes a spec stored before stages carried their job."""
    stages = [stage.model_copy(update={"job": stage_spec(spec, index)}) for index, stage in enumerate(spec.stages)]
    update: dict[str, Any] = {"stages": stages}
    if spec.ensemble is not None:
        members = [with_stage_jobs(member) for member in spec.ensemble.members]
        update["ensemble"] = spec.ensemble.model_copy(update={"members": members})
    return spec.model_copy(update=update)


# A member shares the job's data and task: the ensemble's probabilities average over the same labels.
SHARED_BY_MEMBERS = ("data", "task", "text_field", "text_fields", "label_field", "label_delimiter", "ensemble")


def _ensemble_members(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """`{"size": N}` or `{"members": [partial specs]}` -> every member's expanded spec: a member is
    laid over the job as submitted (so a member's recipe replaces the job's, with the job's own
    overrides kept), then over its recipe."""
    ensemble = raw["ensemble"]
    stray = sorted(set(ensemble) - {"size", "members"})
    if stray:
        raise SpecError(f"ensemble: unknown field {stray[0]!r}; give size or members")
    size, members = ensemble.get("size"), ensemble.get("members")
    if (size is None) == (members is None):
        raise SpecError('ensemble: give size (members differing by seed) or members, one of them: {"size": 5}')
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 2 <= size <= 10:
            raise SpecError(f"ensemble.size: a whole number from 2 to 10, not {size!r}")
        training = raw.get("training") if isinstance(raw.get("training"), dict) else {}
        seed = training.get("seed", 0) if isinstance(training.get("seed", 0), int) else 0
        if seed + size - 1 > 2**31 - 1:
            raise SpecError(f"ensemble.size: the members' seeds {seed}..{seed + size - 1} pass 2^31 - 1")
        members = [{"training": {"seed": seed + index}} for index in range(size)]
    if not isinstance(members, list) or not 2 <= len(members) <= 10:
        raise SpecError("ensemble.members: a list of 2 to 10 partial job specs")
    # The webhook belongs to the job alone: one POST announces the whole ensemble.
    job = {key: value for key, value in raw.items() if key not in ("ensemble", "webhook")}
    expanded = []
    for index, member in enumerate(members):
        where = f"ensemble.members.{index}"
        if not isinstance(member, dict):
            raise SpecError(f"{where}: a member is a partial job spec (an object)")
        shared = [key for key in SHARED_BY_MEMBERS if key in member]
        if shared:
            raise SpecError(f"{where}.{shared[0]}: members share the job's data and task; set it on the job")
        if "webhook" in member:
            raise SpecError(f"{where}.webhook: {MEMBER_WEBHOOK}")
        try:
            expanded.append(expand(deep_merge(job, member)).model_dump(mode="json"))
        except ValidationError as error:
            raise SpecError(describe(error, where)) from None
        except SpecError as error:
            raise SpecError(f"{where}: {error}") from None
    return expanded


def stage_spec(job: JobSpec, index: int) -> JobSpec:
    """The job that stage `index` runs: its data and recipe, the job's base model, model (without
    adapters or LoRA: a stage trains the encoder's own weights), seed and length."""
    stage, where = job.stages[index], f"stages.{index}"
    # A stage trains the encoder's own weights: by default it follows the job's recipe where that
    # recipe does so, and plain fine-tuning where the job's trains adapters, LoRA or the head alone.
    recipe = stage.recipe or (job.recipe if _trains_all(RECIPES.get(job.recipe, {})) else "fine_tuning")
    if recipe not in RECIPES:
        raise UnknownRecipe(f"{where}.recipe: unknown recipe {recipe!r}; known recipes: {', '.join(sorted(RECIPES))}")
    overridden = stage.overrides.get("optimization", {})
    if not _trains_all(RECIPES[recipe]) or not _trains_all({"optimization": overridden}):
        raise SpecError(
            f"{where}: a stage trains the encoder's own weights, so its recipe must train 'all' "
            f"(fine_tuning, ulmfit, chain_thaw, ...); {recipe!r} with its overrides does not"
        )
    if isinstance(overridden, dict) and overridden.get("regularizers"):
        raise SpecError(f"{where}.overrides.optimization.regularizers: stages take no regularizers")
    text_field = stage.text_field or job.text_field
    label_field = stage.label_field or job.label_field
    if stage.objective == "masked_lm" and label_field == text_field:
        label_field = f"{text_field}__unused"  # a masked-LM stage reads no labels
    training: dict[str, Any] = {
        "epochs": stage.epochs,
        "seed": job.training.seed,
        "max_length": job.training.max_length,
        "precision": job.training.precision,
        "batch_size": stage.batch_size or job.training.batch_size,
    }
    if stage.learning_rate is not None:
        training["learning_rate"] = stage.learning_rate
    raw = {
        "base_model": job.base_model,
        "recipe": recipe,
        "data": {"train": stage.data, "validation_fraction": job.data.validation_fraction},
        "text_field": text_field,
        "label_field": label_field,
        "model": job.model.model_dump(mode="json") | {"adapters": None, "lora": None},
        "optimization": stage.overrides.get("optimization", {}),
        "training": deep_merge(training, stage.overrides.get("training", {})),
    }
    recipe_options = {key: value for key, value in RECIPES[recipe].items() if key != "model"}
    # A stage runs no regularizer (the l2_sp and ewc recipes' pull is the main task's business).
    recipe_options["optimization"] = {**recipe_options.get("optimization", {}), "regularizers": []}
    try:
        spec = JobSpec.model_validate(deep_merge(recipe_options, raw))
    except ValidationError as error:
        raise SpecError(describe(error, where)) from None
    return spec


def _trains_all(options: dict[str, Any]) -> bool:
    optimization = options.get("optimization", {})
    return not isinstance(optimization, dict) or optimization.get("train", "all") == "all"
