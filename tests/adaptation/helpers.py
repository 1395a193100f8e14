"""Building blocks for engine tests: a classifier over the tiny BERT, and specs."""

from pathlib import Path

from app.adaptation.model import TextClassifier, load_pretrained_encoder
from app.schemas.recipes import expand
from app.schemas.spec import JobSpec


def job(**overrides) -> JobSpec:
    raw = {"base_model": "tiny-bert", "data": {"train": "ds"}, "training": {"learning_rate": 1e-3, "batch_size": 16}}
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return expand(raw)


def classifier(path: Path, spec: JobSpec, num_labels: int = 2) -> TextClassifier:
    return TextClassifier(load_pretrained_encoder(path), spec.model, num_labels)
