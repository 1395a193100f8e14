"""The submission checks, called as the API calls them but without HTTP, on real databases (SQLite
and PostgreSQL): every dataset and model a spec references (JobSpec.dataset_refs, model_refs) is
checked, wherever in the spec it sits, and a refusal names the field's whole path."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.adaptation.data import LabeledTexts
from app.catalog import Catalog
from app.config import Settings
from app.db.models import Job, Model, Tenant
from app.db.session import session_scope
from app.services.datasets import create_dataset, delete_dataset
from app.services.errors import Conflict, InvalidInput
from app.services.jobs import create_job
from app.storage.store import ArtifactStore, build_store
from tests.utils.data import sentiment, three_way
from tests.utils.services import new_key


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    new_key(settings, "acme")
    new_key(settings, "globex")
    with session_scope(settings.resolved_database_url) as session:
        yield session


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    return build_store(settings)


def tenant(session: Session, name: str) -> str:
    return session.scalar(select(Tenant.id).where(Tenant.name == name))


def rows_of(data: LabeledTexts) -> list[dict]:
    return [{"text": text, "label": label} for text, label in zip(data.texts, data.labels, strict=True)]


def csv_of(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(session: Session, store: ArtifactStore, owner: str, rows: list[dict]) -> str:
    dataset = create_dataset(
        session,
        store,
        tenant_id=tenant(session, owner),
        name="d",
        filename="d.csv",
        raw=csv_of(rows),
        text_field="text",
        label_field="label" if "label" in rows[0] else None,
    )
    session.commit()
    return dataset.id


def submit(session: Session, store: ArtifactStore, settings: Settings, spec: dict) -> Job:
    sent: list[str] = []
    job = create_job(
        session,
        store,
        Catalog(settings),
        lambda job_id, compute: sent.append(job_id),
        tenant_id=tenant(session, "acme"),
        raw={"base_model": "tiny-bert", **spec},
    )
    assert sent == [job.id]
    return job


def refused(session: Session, store: ArtifactStore, settings: Settings, spec: dict) -> str:
    jobs_before = session.scalar(select(func.count()).select_from(Job))
    with pytest.raises(InvalidInput) as refusal:
        submit(session, store, settings, spec)
    assert session.scalar(select(func.count()).select_from(Job)) == jobs_before  # nothing was created
    return refusal.value.message


def test_another_tenants_dataset_is_refused_wherever_the_spec_names_it(session, store, settings):
    train = upload(session, store, "acme", rows_of(sentiment(40)))
    theirs = upload(session, store, "globex", [{"text": t} for t in sentiment(20).texts])
    places = {
        "stages.0.data": {"stages": [{"objective": "masked_lm", "data": theirs}]},
        "consistency.data": {"consistency": {"data": theirs}},
        "optimization.regularizers.0.fisher_data": {
            "recipe": "ewc",
            "optimization": {"regularizers": [{"fisher_data": theirs}]},
        },
        # an ensemble member's own option: its references are the job's, under its path
        "ensemble.members.1.tasks.0.data": {
            "ensemble": {"members": [{}, {"tasks": [{"name": "lm", "objective": "masked_lm", "data": theirs}]}]}
        },
    }
    for path, spec in places.items():
        assert refused(session, store, settings, {"data": {"train": train}, **spec}) == (
            f"{path}: dataset {theirs!r} not found"
        )


def test_a_labeled_stage_needs_two_classes_in_the_rows_it_reads(session, store, settings):
    train = upload(session, store, "acme", rows_of(sentiment(40)))
    topics = three_way(30, seed=1)
    ordered = sorted(topics, key=lambda row: row["label"])  # the first rows share one class
    aux = upload(session, store, "acme", ordered)
    spec = {"data": {"train": train}, "stages": [{"objective": "classification", "data": aux, "max_examples": 3}]}
    message = refused(session, store, settings, spec)
    assert message.startswith(f"stages.0.data: dataset {aux!r} has only one class in 'label' among its first 3 rows")
    assert message.endswith("a classification stage needs at least two")
    spec["stages"][0]["max_examples"] = None
    assert submit(session, store, settings, spec).status == "queued"


def model_row(model_id: str, tenant_id: str, base_model: str, labels: list[str]) -> Model:
    """A trained model's record (no artifact: the checks read the record alone)."""
    return Model(
        id=model_id,
        tenant_id=tenant_id,
        job_id="job_x",
        base_model=base_model,
        spec={},
        labels=labels,
        metrics={},
        trainable_params=1,
        total_params=1,
        artifact_bytes=1,
    )


def test_a_distillation_source_and_a_teacher_are_checked_as_their_role_asks(session, store, settings):
    train = upload(session, store, "acme", rows_of(sentiment(40)))
    labels = sorted(set(sentiment(40).labels))
    owner = tenant(session, "acme")
    session.add_all(
        [
            model_row("mdl_other_base", owner, "minilm-l6", labels),
            model_row("mdl_one_label", owner, "tiny-bert", labels[:1]),
        ]
    )
    session.commit()
    source = {
        "recipe": "fine_tuning",
        "optimization": {"regularizers": [{"name": "source_distillation", "source_model": "mdl_other_base"}]},
    }
    message = refused(session, store, settings, {"data": {"train": train}, **source})
    assert message.startswith(
        "optimization.regularizers.0.source_model: model 'mdl_other_base' must share the job's base_model "
        "('tiny-bert') and labels"
    )
    message = refused(session, store, settings, {"data": {"train": train}, "teacher": "mdl_one_label"})
    assert message.startswith(f"teacher: the labels {labels[1]!r} of data.train are not among the teacher's labels")
    # The same model as a source: a source must have the very labels of the job, not fewer.
    source["optimization"]["regularizers"][0]["source_model"] = "mdl_one_label"
    message = refused(session, store, settings, {"data": {"train": train}, **source})
    assert message.endswith(f"it has 'tiny-bert' and {labels[0]}")


def test_a_dataset_a_members_stage_reads_cannot_be_deleted_while_the_job_is_queued(session, store, settings):
    train = upload(session, store, "acme", rows_of(sentiment(40)))
    text = upload(session, store, "acme", [{"text": t} for t in sentiment(20).texts])
    spec = {
        "data": {"train": train},
        "ensemble": {"members": [{}, {"stages": [{"objective": "masked_lm", "data": text}]}]},
    }
    job = submit(session, store, settings, spec)
    with pytest.raises(Conflict, match=f"dataset {text!r} is in use by queued job {job.id!r}"):
        delete_dataset(session, store, tenant_id=tenant(session, "acme"), dataset_id=text)
