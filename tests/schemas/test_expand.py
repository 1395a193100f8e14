"""`expand` of the more-signal options: ensembles become members' full specs, stages are checked as
jobs of their own, and a refusal names the field."""

from __future__ import annotations

import pytest

from app.schemas.recipes import RECIPES, SpecError, UnknownRecipe, expand, stage_spec

DATA = {"train": "ds_train"}


def test_an_ensemble_of_size_n_has_n_members_with_consecutive_seeds():
    spec = expand({"data": DATA, "training": {"seed": 7, "epochs": 2}, "ensemble": {"size": 3}})
    members = spec.ensemble.members
    assert [member.training.seed for member in members] == [7, 8, 9]
    assert all(member.training.epochs == 2 and member.data == spec.data for member in members)
    assert all(member.ensemble is None for member in members)


def test_an_ensemble_of_size_n_counts_from_seed_0_by_default():
    spec = expand({"data": DATA, "ensemble": {"size": 2}})
    assert [member.training.seed for member in spec.ensemble.members] == [0, 1]


def test_a_members_recipe_replaces_the_jobs_and_keeps_its_other_overrides():
    spec = expand(
        {
            "data": DATA,
            "training": {"epochs": 2, "batch_size": 8},
            "model": {"head": "mlp"},
            "ensemble": {"members": [{"recipe": "adapters"}, {}]},
        }
    )
    adapters, plain = spec.ensemble.members
    assert adapters.recipe == "adapters" and adapters.optimization.train == "adapters"
    assert adapters.model.adapters is not None and adapters.model.adapters.size == 64
    assert adapters.training.learning_rate == RECIPES["adapters"]["training"]["learning_rate"]  # the recipe's
    assert adapters.training.epochs == 2 and adapters.training.batch_size == 8  # the job's overrides win
    assert adapters.model.head == "mlp"
    assert plain.recipe == "fine_tuning" and plain.optimization.train == "all" and plain.model.adapters is None
    assert plain.training.epochs == 2 and plain.model.head == "mlp"


def test_a_member_cannot_set_the_shared_data():
    with pytest.raises(SpecError, match=r"^ensemble\.members\.0\.data: members share the job's data"):
        expand({"data": DATA, "ensemble": {"members": [{"data": {"train": "ds_other"}}, {}]}})


def test_a_stage_with_the_adapters_recipe_is_refused_naming_the_stage():
    with pytest.raises(SpecError, match=r"^stages\.0\b") as refused:
        expand({"data": DATA, "stages": [{"objective": "classification", "data": "ds_x", "recipe": "adapters"}]})
    assert "adapters" in str(refused.value)


def test_an_unknown_stage_recipe_names_the_stage_recipe():
    with pytest.raises(UnknownRecipe, match=r"^stages\.0\.recipe: unknown recipe 'magic'; known recipes: adapters"):
        expand({"data": DATA, "stages": [{"objective": "masked_lm", "data": "ds_x", "recipe": "magic"}]})


@pytest.mark.parametrize("recipe", ["adapters", "lora", "feature_extraction"])
def test_a_stage_of_a_job_whose_recipe_freezes_the_encoder_fine_tunes_it(recipe):
    spec = expand({"recipe": recipe, "data": {"train": "ds"}, "stages": [{"objective": "masked_lm", "data": "u"}]})
    stage = stage_spec(spec, 0)
    assert stage.recipe == "fine_tuning" and stage.optimization.train == "all"
    assert stage.model.adapters is None and stage.model.lora is None


def test_a_stage_runs_no_regularizer_and_refuses_one():
    spec = expand(
        {
            "recipe": "ewc",
            "data": {"train": "ds"},
            "optimization": {"regularizers": [{"fisher_data": "f"}]},
            "stages": [{"objective": "masked_lm", "data": "u"}],
        }
    )
    assert stage_spec(spec, 0).recipe == "ewc" and stage_spec(spec, 0).optimization.regularizers == []
    stage = {"objective": "classification", "data": "u", "overrides": {"optimization": {"regularizers": ["l2_sp"]}}}
    with pytest.raises(SpecError, match=r"stages.0.overrides.optimization.regularizers: stages take no regularizers"):
        expand({"data": {"train": "ds"}, "stages": [stage]})


def test_the_expanded_spec_carries_every_stages_job_its_members_too():
    spec = expand(
        {
            "data": {"train": "ds"},
            "stages": [{"objective": "classification", "data": "aux", "recipe": "ulmfit", "epochs": 2}],
            "ensemble": {"members": [{}, {"stages": [{"objective": "masked_lm", "data": "text"}]}]},
        }
    )
    assert spec.stages[0].job == stage_spec(spec, 0)
    assert spec.stages[0].job.optimization.unfreezing.name == "gradual" and spec.stages[0].job.training.epochs == 2
    member = spec.ensemble.members[1]
    assert member.stages[0].job == stage_spec(member, 0) and member.stages[0].job.data.train == "text"
    # What a job record stores is whole: validated again, it is the same spec, jobs included.
    stored = spec.model_dump(mode="json")
    assert stored["stages"][0]["job"]["recipe"] == "ulmfit"
    assert type(spec).model_validate(stored) == spec


def test_a_stage_job_sent_with_the_spec_is_replaced_by_the_expansion():
    first = expand({"data": {"train": "ds"}, "stages": [{"objective": "masked_lm", "data": "text"}]})
    sent = first.model_dump(mode="json")
    sent["stages"][0]["job"]["training"]["epochs"] = 7  # not what the stage says (epochs 1)
    assert expand(sent).stages[0].job == first.stages[0].job
