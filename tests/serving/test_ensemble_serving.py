"""Ensembles are served as one model: the mean of their members' probabilities, each member loaded as
a single model would be (members on one base share its resident encoder and its forward passes),
counted in the cache's budget and evicted with the ensemble."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.adaptation import TaskData, adapt, load_classifier
from app.adaptation.ensemble import load_model
from app.adaptation.job import save_result
from app.adaptation.resources import Resources
from app.api.main import create_app
from app.config import Settings
from app.db.models import ApiKey, Model
from app.db.session import session_scope
from app.schemas.recipes import expand
from app.services.keys import hash_key
from app.serving.batcher import MicroBatcher
from app.serving.cache import ModelCache
from app.serving.ensembles import Ensemble
from app.serving.errors import Unloaded
from app.serving.predictor import predict
from app.storage.artifacts import LocalArtifactStore
from tests.serving.test_batcher import wait_until
from tests.utils.data import sentiment, tagged
from tests.utils.services import auth, migrate, new_key
from tests.utils.tiny_model import build_tiny_bert

TEXTS = ["the movie was great", "awful plot", "really quite long and terrible acting", "lovely", "bad"]
TRAINING = {"epochs": 1, "learning_rate": 1e-3, "batch_size": 16}
# Two fully fine-tuned members (their own encoders) and two on the shared base (adapters, LoRA).
MEMBERS = [{}, {"recipe": "adapters"}, {"recipe": "lora"}, {"training": {"seed": 3}}]


def train_ensemble(directory: Path, bases: dict[str, Path], members: list, data: TaskData, **job) -> Path:
    raw = {"base_model": "tiny-bert", "data": {"train": "ds"}, "training": TRAINING, **job}
    spec = expand({**raw, "ensemble": {"members": members}})
    result = adapt(spec, data, bases["tiny-bert"], resources=Resources(base_models=bases))
    save_result(result, spec, directory)
    return directory


def probabilities(predictions: list[dict]) -> torch.Tensor:
    return torch.tensor([list(p["scores"].values()) for p in predictions])


@pytest.fixture(scope="module")
def bases(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Catalog id -> folder: the tiny BERT the other serving tests use, and a second base model."""
    return {"tiny-bert": tiny_model_dir, "other-bert": build_tiny_bert(tmp_path_factory.mktemp("other"), seed=1)}


@pytest.fixture(scope="module")
def ensemble(bases, tmp_path_factory) -> Path:
    return train_ensemble(tmp_path_factory.mktemp("ensemble"), bases, MEMBERS, TaskData(sentiment(120)))


@pytest.fixture(scope="module")
def mixed_bases(bases, tmp_path_factory) -> Path:
    """An ensemble whose members sit on two base models."""
    members = [{"recipe": "adapters"}, {"recipe": "lora", "base_model": "other-bert"}]
    return train_ensemble(tmp_path_factory.mktemp("mixed"), bases, members, TaskData(sentiment(120)))


@pytest.fixture(scope="module")
def multi_label(bases, tmp_path_factory) -> Path:
    data = TaskData(tagged(120), tagged(40, seed=2))
    members = [{}, {"recipe": "lora"}]
    return train_ensemble(tmp_path_factory.mktemp("tagged"), bases, members, data, task="multi_label")


def card(directory: Path) -> dict:
    return json.loads((directory / "thaw.json").read_text())


def each_member_alone(directory: Path, bases: dict[str, Path], texts: list[str]) -> list[torch.Tensor]:
    return [
        load_classifier(directory / m["path"], bases[m["base_model"]]).probabilities(texts)
        for m in card(directory)["members"]
    ]


def alone_bytes(directory: Path, base: Path) -> int:
    cache = ModelCache(max_models=10, max_bytes=10**12)
    cache.get("alone", directory, base)
    return cache.resident_bytes()


def test_an_ensemble_serves_the_mean_of_its_members_each_loaded_alone(ensemble, bases):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = cache.get("ens", ensemble, bases["tiny-bert"])
    assert isinstance(served.deployment, Ensemble) and cache.loaded() == ["ens"]
    [predictions] = served.deployment.predict([("ens", TEXTS)], max_batch=64)
    each = each_member_alone(ensemble, bases, TEXTS)
    assert not torch.allclose(each[0], each[3], atol=1e-3), "the members really differ"
    mean = torch.stack(each).mean(0)
    torch.testing.assert_close(probabilities(predictions), mean, atol=1e-5, rtol=0)
    labels = card(ensemble)["labels"]
    assert [p["label"] for p in predictions] == [labels[i] for i in mean.argmax(-1).tolist()]
    assert all(set(p["scores"]) == set(labels) and "labels" not in p for p in predictions)


def test_several_requests_of_an_ensemble_in_one_batch_each_get_their_own(ensemble, bases):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = cache.get("ens", ensemble, bases["tiny-bert"])
    requests = [("ens", TEXTS[:2]), ("ens", TEXTS), ("ens", TEXTS[3:])]
    for (_, texts), predictions in zip(requests, served.deployment.predict(requests, max_batch=3), strict=True):
        mean = torch.stack(each_member_alone(ensemble, bases, texts)).mean(0)
        torch.testing.assert_close(probabilities(predictions), mean, atol=1e-5, rtol=0)


def test_members_on_one_base_share_its_encoder_and_its_forward_passes(ensemble, bases, trained_models):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    single = cache.get("adapters", trained_models["adapters"], bases["tiny-bert"])
    ensemble_parts = cache.get("ens", ensemble, bases["tiny-bert"]).deployment.parts
    deployments = [deployment for deployment, _ in ensemble_parts]
    assert deployments[1] is deployments[2] is single.deployment, "adapters and LoRA members: the shared base"
    assert len({id(d) for d in deployments}) == 3, "each fully fine-tuned member has its own encoder"
    assert set(single.deployment.members) == {"adapters", "ens/member-1", "ens/member-2"}
    calls = []
    first_linear = single.deployment.encoder.encoder.layer[0].intermediate.dense
    handle = first_linear.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        cache.peek("ens").deployment.predict([("ens", TEXTS)], max_batch=64)
    finally:
        handle.remove()
    assert calls == [2 * len(TEXTS)], "both members on the base ran in one forward pass"


def test_the_budget_counts_every_member_and_eviction_frees_them(ensemble, bases, trained_models):
    base = bases["tiny-bert"]
    members = [ensemble / m["path"] for m in card(ensemble)["members"]]
    cache = ModelCache(max_models=10, max_bytes=10**12)
    single = cache.get("adapters", trained_models["adapters"], base)
    one_model = cache.resident_bytes()
    base_bytes = single.deployment.nbytes
    cache.get("ens", ensemble, base)
    # Each member costs what it costs alone, less the base that the single model already holds.
    assert cache.resident_bytes() == one_model + sum(alone_bytes(m, base) for m in members) - 2 * base_bytes
    assert cache._model_count() == 1 + len(members)
    cache.evict("ens")
    assert cache.loaded() == ["adapters"] and cache.resident_bytes() == one_model
    assert set(single.deployment.members) == {"adapters"}, "the members left the shared base"
    cache.evict("adapters")
    assert cache.resident_bytes() == 0 and not cache._deployments


def test_least_recently_used_eviction_counts_the_members(ensemble, bases, trained_models):
    base = bases["tiny-bert"]
    probe = ModelCache(max_models=10, max_bytes=10**12)
    probe.get("full", trained_models["full"], base)
    full_bytes = probe.resident_bytes()
    probe.get("ens", ensemble, base)
    both = probe.resident_bytes()
    by_bytes = ModelCache(max_models=10, max_bytes=both - 1)
    by_bytes.get("full", trained_models["full"], base)
    by_bytes.get("ens", ensemble, base)
    assert by_bytes.loaded() == ["ens"], "the ensemble's members made the budget overflow"
    by_bytes.get("full", trained_models["full"], base)
    assert by_bytes.loaded() == ["full"] and by_bytes.resident_bytes() == full_bytes, "the members went too"
    by_count = ModelCache(max_models=len(MEMBERS), max_bytes=10**12)
    by_count.get("full", trained_models["full"], base)
    by_count.get("ens", ensemble, base)
    assert by_count.loaded() == ["ens"], "four members and one model are five models"


def test_a_batch_mixing_the_ensemble_and_single_models_answers_each_its_own(ensemble, bases, trained_models):
    base = bases["tiny-bert"]
    cache = ModelCache(max_models=10, max_bytes=10**12)
    models = {
        "ens": cache.get("ens", ensemble, base),
        "adapters": cache.get("adapters", trained_models["adapters"], base),  # on the ensemble's base
        "full": cache.get("full", trained_models["full"], base),
    }
    expected = {
        "ens": lambda texts: torch.stack(each_member_alone(ensemble, bases, texts)).mean(0),
        "adapters": lambda texts: load_classifier(trained_models["adapters"], base).probabilities(texts),
        "full": lambda texts: load_classifier(trained_models["full"], base).probabilities(texts),
    }
    batcher = MicroBatcher(0.001, max_batch=64, queue_limit=100)
    try:
        with models["full"].deployment._lock:  # a forward pass is running: the requests below queue up
            batcher.submit(models["full"], ["busy"])
            wait_until(lambda: not batcher._pending)
            order = ["ens", "adapters", "full", "ens", "adapters", "ens"]
            waiting = [
                (name, TEXTS[i % 3 :], batcher.submit(models[name], TEXTS[i % 3 :])) for i, name in enumerate(order)
            ]
        for name, texts, future in waiting:
            got = probabilities(future.result(timeout=30))
            torch.testing.assert_close(got, expected[name](texts), atol=1e-5, rtol=0)
        assert batcher.batches == 4, "the busy one, then one batch per deployment or ensemble"
    finally:
        batcher.close()


def test_members_on_other_base_models_are_found_through_the_catalog(mixed_bases, bases):
    entries = card(mixed_bases)["members"]
    assert [m["base_model"] for m in entries] == ["tiny-bert", "other-bert"]
    cache = ModelCache(max_models=10, max_bytes=10**12)
    with pytest.raises(ValueError, match="other-bert"):
        cache.get("mixed", mixed_bases, bases["tiny-bert"])  # no way to find the second member's base
    assert cache.loaded() == [] and cache.resident_bytes() == 0, "the member that loaded went again"
    served = cache.get("mixed", mixed_bases, bases["tiny-bert"], base_models=bases.__getitem__)
    first, second = (deployment for deployment, _ in served.deployment.parts)
    assert first is not second, "one resident base per base model"
    [predictions] = served.deployment.predict([("mixed", TEXTS)], max_batch=64)
    mean = torch.stack(each_member_alone(mixed_bases, bases, TEXTS)).mean(0)
    torch.testing.assert_close(probabilities(predictions), mean, atol=1e-5, rtol=0)


def test_a_multi_label_ensemble_applies_its_own_threshold_to_the_mean(multi_label, bases):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = cache.get("tagged", multi_label, bases["tiny-bert"])
    texts = ["a hilarious and tragic story", "witty", "gloomy plot", "the movie"]
    [predictions] = served.deployment.predict([("tagged", texts)], max_batch=64)
    mean = torch.stack(each_member_alone(multi_label, bases, texts)).mean(0)
    torch.testing.assert_close(probabilities(predictions), mean, atol=1e-5, rtol=0)
    threshold = card(multi_label)["threshold"]
    assert threshold is not None, "fitted on the validation data, over the mean of the members"
    for prediction in predictions:
        assert prediction["labels"] == [label for label, p in prediction["scores"].items() if p > threshold]


def test_predictions_outside_the_service_match_the_served_ones(multi_label, bases):
    texts = ["a hilarious and tragic story", "witty", "the movie"]
    cache = ModelCache(max_models=10, max_bytes=10**12)
    [served] = cache.get("tagged", multi_label, bases["tiny-bert"]).deployment.predict([("tagged", texts)], 64)
    alone = predict(load_model(multi_label, bases.__getitem__), texts)
    assert [p["labels"] for p in alone] == [p["labels"] for p in served]
    torch.testing.assert_close(probabilities(alone), probabilities(served), atol=1e-5, rtol=0)


def test_an_evicted_ensemble_answers_unloaded_with_its_own_id(ensemble, bases):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = cache.get("ens", ensemble, bases["tiny-bert"])
    cache.evict("ens")
    with pytest.raises(Unloaded, match="'ens'"):
        served.deployment.predict([("ens", TEXTS)], max_batch=64)


def test_the_predict_route_serves_an_ensemble(mixed_bases, bases, tmp_path):
    settings = Settings(var_dir=tmp_path / "var", base_models=bases, queue="thaw-test-ensemble")
    settings.var_dir.mkdir(parents=True)
    migrate(settings.resolved_database_url)
    key = new_key(settings, "acme")
    store = LocalArtifactStore(settings.resolved_artifacts_dir)
    shutil.copytree(mixed_bases, store.staging_dir("mdl_ensemble"), dirs_exist_ok=True)
    size = store.publish_model("mdl_ensemble")
    spec = expand({"base_model": "tiny-bert", "data": {"train": "ds"}, "ensemble": {"size": 2}})
    with session_scope(settings.resolved_database_url) as session:
        tenant_id = session.scalar(select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(key)))
        session.add(
            Model(
                id="mdl_ensemble",
                tenant_id=tenant_id,
                job_id="job_ensemble",
                base_model="tiny-bert",
                spec=spec.model_dump(mode="json"),
                labels=card(mixed_bases)["labels"],
                metrics={},
                trainable_params=0,
                total_params=0,
                artifact_bytes=size,
            )
        )
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/models/mdl_ensemble/predict", json={"inputs": TEXTS}, headers=auth(key))
    assert response.status_code == 200, response.text
    mean = torch.stack(each_member_alone(mixed_bases, bases, TEXTS)).mean(0)
    torch.testing.assert_close(probabilities(response.json()["predictions"]), mean, atol=1e-5, rtol=0)
