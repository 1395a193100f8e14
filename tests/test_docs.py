"""The documentation site (`make docs`): it builds with --strict, its generated job-spec reference names
every field of the spec, its Recipes page every recipe, and the README stays short, with links that
resolve and figures that the Benchmarks page holds too."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify
from pydantic import BaseModel

from app.schemas.recipes import RECIPES
from app.schemas.spec import JobSpec

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text: tags dropped, entities decoded."""
    built = site / Path(page).with_suffix("") / "index.html"
    return html.unescape(re.sub(r"<[^>]+>", "", built.read_text(encoding="utf-8")))


def nav_pages(nav: list) -> Iterator[str]:
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from nav_pages(value)
        else:
            yield value


def test_every_page_of_the_nav_is_built(site: Path) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = list(nav_pages(config["nav"]))
    assert {"index.md", "job-spec.md", "recipes.md", "benchmarks.md", "guarantees.md"} <= set(pages)
    for page in pages:
        built = site / "index.html" if page == "index.md" else site / Path(page).with_suffix("") / "index.html"
        assert built.is_file(), page
    assert "<!-- generated:" not in (site / "job-spec" / "index.html").read_text(encoding="utf-8")


def nested_models(annotation: object) -> Iterator[type[BaseModel]]:
    """The pydantic models inside a field's annotation: `X`, `X | None`, `list[X]`, unions, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for argument in typing.get_args(annotation):
            yield from nested_models(argument)


def field_paths(model: type[BaseModel], prefix: str = "", around: tuple[type, ...] = ()) -> Iterator[str]:
    """Every field of the model and of the models it holds, dotted (`optimization.lr_schedule.cut_frac`)."""
    around = (*around, model)
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path
        for nested in nested_models(info.annotation):
            if nested not in around:  # an ensemble member or a stage's job is a whole JobSpec again
                yield from field_paths(nested, f"{path}.", around)


def test_the_job_spec_reference_names_every_field(site: Path) -> None:
    paths = set(field_paths(JobSpec))
    # The walk itself reaches the parts the reference must cover.
    assert {"data.train", "model.pooling", "optimization.lr_schedule", "training.epochs"} <= paths
    assert {"optimization.lr_schedule.cut_frac", "optimization.regularizers.fisher_data"} <= paths
    built = (site / "job-spec" / "index.html").read_text(encoding="utf-8")
    # Each field is a code element of the reference's tables; `[]` marks list items there (stages[].epochs).
    named = {html.unescape(code).replace("[]", "") for code in re.findall(r"<code>([^<]*)</code>", built)}
    missing = sorted(paths - named)
    assert not missing, f"fields missing from the generated job-spec reference: {missing}"


def test_the_recipes_page_names_every_recipe(site: Path) -> None:
    text = page_text(site, "recipes.md")
    missing = [name for name in RECIPES if name not in text]
    assert not missing, missing
    assert '"lr_schedule": "linear_warmup"' in text  # the overrides are there, as JSON


README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_short_and_its_links_resolve() -> None:
    assert len(README.encode("utf-8")) < 10_240
    targets = [t for t in LINK.findall(README) if not re.match(r"[a-z]+:|#", t)]
    assert "docs/job-spec.md" in targets and "docs/benchmarks.md" in targets
    for target in targets:
        file, _, anchor = target.partition("#")
        assert (ROOT / file).is_file(), target
        if anchor and file.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", (ROOT / file).read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}, target


def readme_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r} in the README"
    return match.group(1)


# A number as written, with its unit when one follows: 97.0%, 2.15×, 3.0 MiB, 9.3 s, 2,000, 218.0.
FIGURE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:%|×|\s(?:MiB|GiB|MB|GB|ms|s)\b)?")


def test_every_figure_of_the_readme_results_is_on_the_benchmarks_page() -> None:
    results = LINK.sub(lambda m: m.group(0).split("](")[0], readme_section("Results at a glance"))
    figures = set(FIGURE.findall(results))
    assert {"97.0%", "2.15×", "3.05×"} <= figures
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    missing = sorted(figure for figure in figures if figure not in benchmarks)
    assert not missing, f"README figures not on docs/benchmarks.md: {missing}"
