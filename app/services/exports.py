"""A model's export as one tar.gz: its Hugging Face folder or ONNX graph (app/adaptation/exports),
built from the stored artifact in a temporary folder that the caller removes once it is sent."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from app.catalog import Catalog
from app.services.models import get_model
from app.storage.store import ArtifactStore

ExportFormat = Literal["hf", "onnx"]


def export_archive(
    session: Session, store: ArtifactStore, catalog: Catalog, *, tenant_id: str, model_id: str, fmt: ExportFormat
) -> Path:
    """The tenant's model exported as `<model_id>-<fmt>.tar.gz` (one top folder of that name) in a
    new temporary folder; NotFound for a model that is not the tenant's."""
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    store.verify_model(model.id)
    # Imported here: the engine's torch and transformers load on the first export, not with the API.
    from app.adaptation.exports import export_model
    from app.adaptation.exports.hf import export_hf
    from app.adaptation.exports.onnx import export_onnx

    exporter = {"hf": export_hf, "onnx": export_onnx}[fmt]
    work = Path(tempfile.mkdtemp(prefix=f"thaw-export-{model.id}-"))
    try:
        name = f"{model.id}-{fmt}"
        export_model(exporter, store.model_dir(model.id), lambda base: catalog.get(base).path, work / name)
        archive = work / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(work / name, arcname=name)
        shutil.rmtree(work / name)
        return archive
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
