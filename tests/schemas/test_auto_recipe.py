"""Recipe `auto`, the default: setfit for few rows per class, fine_tuning otherwise; a named recipe
is exactly that recipe."""

import pytest

from app.schemas.recipes import RECIPES, SETFIT_BELOW_ROWS_PER_CLASS, expand

DATA = {"data": {"train": "ds"}}


def counts(per_class: int, classes: int = 3) -> dict[str, int]:
    return {f"class-{i}": per_class for i in range(classes)}


@pytest.mark.parametrize("raw", [DATA, {**DATA, "recipe": "auto"}], ids=["no recipe", "auto"])
def test_few_rows_per_class_choose_setfit_and_say_why(raw):
    spec = expand(raw, counts(8))
    assert spec.recipe == "setfit" and spec.contrastive is not None
    assert spec.recipe_choice.recipe == "setfit" and spec.recipe_choice.requested == "auto"
    assert spec.recipe_choice.rows == 24 and spec.recipe_choice.classes == 3
    assert "24 training rows over 3 classes (8 per class)" in spec.recipe_choice.reason


def test_enough_rows_per_class_choose_fine_tuning():
    spec = expand(DATA, counts(SETFIT_BELOW_ROWS_PER_CLASS))
    assert spec.recipe == "fine_tuning" and spec.contrastive is None
    assert f"{SETFIT_BELOW_ROWS_PER_CLASS} or more per class" in spec.recipe_choice.reason
    assert expand(DATA, counts(SETFIT_BELOW_ROWS_PER_CLASS - 1)).recipe == "setfit"


def test_the_chosen_recipe_expands_as_if_named():
    chosen = expand(DATA, counts(5)).model_dump()
    named = expand({**DATA, "recipe": "setfit"}).model_dump()
    assert {k: v for k, v in chosen.items() if k != "recipe_choice"} == {
        k: v for k, v in named.items() if k != "recipe_choice"
    }


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({**DATA, "task": "multi_label", "threshold": 0.5}, "one text field and one label"),
        ({**DATA, "text_fields": ["a", "b"]}, "one text field and one label"),
        ({**DATA, "compute": {"processes": 2}}, "setfit trains in one process"),
    ],
)
def test_what_setfit_cannot_train_gets_fine_tuning(raw, why):
    spec = expand(raw, counts(4))
    assert spec.recipe == "fine_tuning" and why in spec.recipe_choice.reason


def test_unknown_counts_get_fine_tuning():
    spec = expand(DATA)
    assert spec.recipe == "fine_tuning" and "unknown" in spec.recipe_choice.reason


def test_a_named_recipe_is_that_recipe_and_a_sent_choice_is_dropped():
    sent = {"requested": "auto", "recipe": "setfit", "reason": "made up"}
    spec = expand({**DATA, "recipe": "fine_tuning", "recipe_choice": sent}, counts(4))
    assert spec.recipe == "fine_tuning" and spec.recipe_choice is None
    assert "auto" not in RECIPES  # auto is a rule, not a recipe of its own
