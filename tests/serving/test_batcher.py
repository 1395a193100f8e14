"""The micro-batcher gathers concurrent requests into shared forward passes, and refuses past its
queue limit. A busy forward pass is real here: the test holds the deployment's lock, which every
forward pass takes, so requests queue exactly as they would behind a long batch."""

import contextlib
import time
from concurrent.futures import Future

import pytest

from app.serving.batcher import MicroBatcher
from app.serving.cache import ModelCache
from app.serving.errors import Overloaded, Unloaded

TEXTS = ["the movie was great", "awful plot", "quite long and terrible", "lovely acting", "bad", "good"]


@pytest.fixture
def cache(trained_models, tiny_model_dir):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    for kind in ("adapters", "lora", "full"):
        cache.get(kind, trained_models[kind], tiny_model_dir)
    return cache


@pytest.fixture
def new_batcher():
    """MicroBatcher(max_wait_seconds, max_batch=64, queue_limit), each closed after the test."""
    made: list[MicroBatcher] = []

    def make(max_wait_seconds: float, queue_limit: int = 100) -> MicroBatcher:
        made.append(MicroBatcher(max_wait_seconds, max_batch=64, queue_limit=queue_limit))
        return made[-1]

    yield make
    for batcher in made:
        batcher.close()


def served(cache: ModelCache, kind: str):
    return cache._hit(kind)


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@contextlib.contextmanager
def busy_forward(batcher: MicroBatcher, model):
    """A forward pass of `model`'s deployment is running: a request was taken and waits on its lock."""
    with model.deployment._lock:
        batcher.submit(model, ["busy"])
        wait_until(lambda: not batcher._pending)
        yield


def test_requests_that_wait_together_share_one_forward_pass(cache, new_batcher):
    batcher = new_batcher(0.001, queue_limit=100)
    adapters, lora = served(cache, "adapters"), served(cache, "lora")
    with busy_forward(batcher, adapters):
        waiting = [batcher.submit(lora if i % 2 else adapters, [text]) for i, text in enumerate(TEXTS)]
    results = [future.result(timeout=10) for future in waiting]
    assert batcher.batches == 2, "the six requests that waited ran as one batch, mixed models and all"
    for i, (text, [prediction]) in enumerate(zip(TEXTS, results, strict=True)):
        model = lora if i % 2 else adapters
        [[expected]] = model.deployment.predict([(model.key, [text])], 64)
        assert prediction["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def test_a_lone_request_does_not_wait_for_company(cache, new_batcher):
    batcher = new_batcher(60, queue_limit=100)
    [prediction] = batcher.submit(served(cache, "full"), ["good"]).result(timeout=10)
    assert set(prediction["scores"]) == {"negative", "positive"}


def test_after_a_concurrent_batch_it_waits_up_to_max_wait_for_company(cache, new_batcher):
    batcher = new_batcher(2.0, queue_limit=100)
    model = served(cache, "full")
    with busy_forward(batcher, model):
        gathered = [batcher.submit(model, [text]) for text in TEXTS[:3]]
    for future in gathered:
        future.result(timeout=10)
    assert batcher.batches == 2
    # The last batch held 3 requests: the next one waits (up to 2 s) for 3 to gather.
    early = batcher.submit(model, ["first"])
    time.sleep(0.05)
    late = [batcher.submit(model, [text]) for text in ("second", "third")]
    for future in (early, *late):
        future.result(timeout=10)
    assert batcher.batches == 3, "one batch for the three, though they arrived 50 ms apart"


def test_a_full_queue_refuses_at_once_and_only_for_that_model(cache, new_batcher):
    batcher = new_batcher(0.001, queue_limit=3)
    full, lora = served(cache, "full"), served(cache, "lora")
    with busy_forward(batcher, full):
        accepted: list[Future] = [batcher.submit(full, ["a", "b"])]
        with pytest.raises(Overloaded, match="'full' has 2 texts waiting \\(limit 3\\)"):
            batcher.submit(full, ["c", "d"])
        accepted.append(batcher.submit(full, ["c"]))  # 3 waiting: at the limit, not over it
        accepted.append(batcher.submit(lora, ["e", "f", "g"]))  # another model, its own queue
    assert [len(f.result(timeout=10)) for f in accepted] == [2, 1, 3]


def test_a_model_unloaded_while_its_request_waited_fails_that_request(cache, new_batcher):
    batcher = new_batcher(0.001, queue_limit=100)
    full = served(cache, "full")
    with busy_forward(batcher, full):
        orphan = batcher.submit(served(cache, "lora"), ["x"])
        cache.evict("lora")
    with pytest.raises(Unloaded, match="'lora' was unloaded"):
        orphan.result(timeout=10)
    assert batcher.submit(full, ["still serving"]).result(timeout=10)
