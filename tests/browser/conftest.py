"""A live service for the dashboard's browser tests, and a real headless Chromium to drive it.

One service per module: the API under uvicorn on a loopback port, a real worker, the SQLite backend
with its embedded broker, and the tiny random BERT; the jobs it trains are shared by every test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import build_settings, unavailable
from tests.utils.data import as_csv, sentiment
from tests.utils.services import ROOT, WorkerProcess, auth, free_port, healthy, new_key, service_env, wait_for

FINISHED = {"succeeded", "failed", "cancelled", "partial"}
CHROMIUM = os.environ.get("THAW_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless and offline: no sandbox (containers), no GPU, and none of Chromium's own network calls.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What a missing field or a mishandled value looks like once written into the page.
PLACEHOLDERS = re.compile(r"\b(undefined|null|NaN)\b|\[object Object\]")
TRAINING = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3}
TEST_SET = sentiment(40, seed=9)


@dataclass
class LiveService:
    url: str
    key: str
    settings: Settings
    jobs: dict[str, dict] = field(default_factory=dict)  # what each test works on, by role
    experiment: dict | None = None

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.key)

    def get(self, path: str) -> dict:
        response = httpx.get(f"{self.url}{path}", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict | None = None, **options) -> httpx.Response:
        # The first prediction loads the model (and imports torch): seconds on a slow machine.
        return httpx.post(f"{self.url}{path}", headers=self.headers, json=body, timeout=120, **options)

    def upload(self, name: str, content: bytes) -> str:
        response = httpx.post(f"{self.url}/v1/datasets", headers=self.headers, files={"file": (name, content)})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def until_finished(self, path: str, timeout: float = 180) -> dict:
        def finished() -> dict | None:
            thing = self.get(path)
            return thing if thing["status"] in FINISHED else None

        return wait_for(finished, timeout)


class ApiProcess:
    """`uvicorn app.api.main:create_app` in a process of its own, logging to a file."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = settings.var_dir / "api.log"
        self.log = self.log_path.open("w")
        command = [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=service_env(settings), stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        wait_for(lambda: healthy(self.url) or self.process.poll() is not None, timeout=60)
        if self.process.poll() is not None:
            raise RuntimeError(f"the API did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LiveService]:
    """The service, with a job and an experiment (two more jobs) trained to the end."""
    settings = build_settings(tmp_path_factory.mktemp("dashboard") / "var", {"tiny-bert": tiny_model_dir})
    worker, api = WorkerProcess(settings), ApiProcess(settings)
    try:
        api.wait_ready()
        worker.wait_ready()
        service = LiveService(api.url, new_key(settings), settings)
        data = {
            "train": service.upload("train.csv", as_csv(sentiment(120, seed=1))),
            "test": service.upload("test.csv", as_csv(TEST_SET)),
        }
        spec = {"base_model": "tiny-bert", "data": data, "training": TRAINING}
        job = service.post("/v1/jobs", spec)
        assert job.status_code == 202, job.text
        experiment = service.post(
            "/v1/experiments",
            {
                "name": "recipes on sentiment",
                "data": data,
                "base_model": "tiny-bert",
                "common": {"training": TRAINING},
                "recipes": ["fine_tuning", "feature_extraction"],
                "seeds": [0],
            },
        )
        assert experiment.status_code == 202, experiment.text
        service.jobs["fine_tuning"] = service.until_finished(f"/v1/jobs/{job.json()['id']}")
        service.experiment = service.until_finished(f"/v1/experiments/{experiment.json()['id']}")
        for run in service.experiment["runs"]:
            service.jobs[f"experiment {run['variant']}"] = service.get(f"/v1/jobs/{run['job_id']}")
        for name, finished in service.jobs.items():
            assert finished["status"] == "succeeded", (name, finished["error"], worker.log_path.read_text()[-3000:])
        yield service
    finally:
        api.stop()
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium through Playwright (its own browser download is not used: the system's Chromium)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        unavailable("Playwright", error)
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as error:  # noqa: BLE001 - a missing or broken browser, whatever the error
            unavailable(f"headless Chromium ({CHROMIUM})", error)
        yield browser
        browser.close()


@dataclass
class Tab:
    """A browser tab on the dashboard, with what went wrong in its scripts."""

    page: object
    url: str
    problems: list[str] = field(default_factory=list)

    def open(self, route: str = "") -> None:
        self.page.goto(f"{self.url}/ui{route}")

    def log_in(self, key: str) -> None:
        self.page.fill("#api-key", key)
        self.page.click("#login-form button[type=submit]")

    def assert_readable(self) -> None:
        """No value on the page reads as one of JavaScript's placeholders ("undefined", "null", ...)."""
        text = self.page.inner_text("main")
        assert not PLACEHOLDERS.search(text), PLACEHOLDERS.search(text).group(0)

    def save_screenshot(self, name: str) -> None:
        self.page.screenshot(path=artifacts_dir() / name, full_page=True)


@pytest.fixture
def tab(browser, live: LiveService) -> Iterator[Tab]:
    """A fresh tab (its own sessionStorage: logged out). At the end, no script may have failed and
    nothing may have broken the Content-Security-Policy."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    tab = Tab(page, live.url)

    def on_console(message) -> None:
        # The API's refusals (401, 404, 422) show up as "Failed to load resource": they are expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            tab.problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.problems.append(f"uncaught: {error}"))
    yield tab
    context.close()
    assert not tab.problems, tab.problems


@pytest.fixture
def logged_in(tab: Tab, live: LiveService) -> Tab:
    tab.open()
    tab.log_in(live.key)
    tab.page.wait_for_selector("table.jobs")
    return tab


def artifacts_dir() -> Path:
    """Where screenshots go: $THAW_TEST_ARTIFACTS, else test-artifacts/ at the repository's root."""
    directory = Path(os.environ.get("THAW_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
