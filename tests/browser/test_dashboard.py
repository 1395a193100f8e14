"""The dashboard at /ui in a real headless Chromium, against a real API and worker: what it shows is
what the API holds (chart points, confusion matrix, events, predictions), not merely that it renders."""

from __future__ import annotations

import httpx
import pytest

from app.db.session import session_scope
from app.services.keys import revoke_key
from tests.browser.conftest import TEST_SET, TRAINING, LiveService, Tab
from tests.utils.data import as_csv, sentiment
from tests.utils.services import auth, new_key, wait_for

pytestmark = pytest.mark.slow

# ---- reading the page ------------------------------------------------------------------------


def chart_series(tab: Tab, canvas_id: str) -> dict[str, list[dict]]:
    """The points each dataset of the Chart.js chart on `canvas_id` holds, by dataset label."""
    return tab.page.evaluate(
        "id => Object.fromEntries(Chart.getChart(id).data.datasets.map(d => [d.label, d.data]))",
        canvas_id,
    )


def rows_of(tab: Tab, selector: str) -> list[list[str]]:
    """The text of every cell (header cells included) of every body row of the table at `selector`."""
    return tab.page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )


def link_targets(tab: Tab, selector: str) -> list[str]:
    return tab.page.eval_on_selector_all(selector, "links => links.map(a => a.hash)")


def badge(tab: Tab) -> str:
    return tab.page.inner_text("h1 .badge")


def stored_key(tab: Tab) -> str | None:
    return tab.page.evaluate("sessionStorage.getItem('thaw.apiKey')")


def refusal(url: str) -> str:
    """What the API says to a key it does not know."""
    return httpx.get(f"{url}/v1/jobs", headers=auth("thaw_not-a-key")).json()["detail"]


def mean_std(spread: dict) -> str:
    return f"{spread['mean']:.3f}" if spread["std"] is None else f"{spread['mean']:.3f} ± {spread['std']:.3f}"


# ---- the key ---------------------------------------------------------------------------------


def test_nothing_shows_until_the_api_accepts_a_key(tab: Tab, live: LiveService):
    tab.open()
    tab.page.wait_for_selector("#login-form")
    assert tab.page.locator("#nav").is_hidden() and tab.page.locator("table").count() == 0

    tab.log_in("thaw_not-a-key")
    assert tab.page.wait_for_selector(".login-status .error").inner_text() == refusal(live.url)
    assert stored_key(tab) is None and tab.page.locator("table").count() == 0

    tab.log_in(live.key)
    tab.page.wait_for_selector("table.jobs")
    assert stored_key(tab) == live.key
    tab.page.reload()  # the key outlives a reload of the tab
    tab.page.wait_for_selector("table.jobs")

    tab.page.click("#logout")
    tab.page.wait_for_selector("#login-form")
    assert stored_key(tab) is None and tab.page.locator("table").count() == 0


def test_a_key_revoked_mid_session_brings_back_the_login_form_with_the_apis_message(tab: Tab, live: LiveService):
    key = new_key(live.settings)
    tab.open()
    tab.log_in(key)
    tab.page.wait_for_selector("table.jobs")
    with session_scope(live.settings.resolved_database_url) as session:
        assert revoke_key(session, key=key)
    tab.page.click("#nav a[data-section=models]")
    assert tab.page.wait_for_selector(".login-status .error").inner_text() == refusal(live.url)
    assert stored_key(tab) is None and tab.page.locator("table").count() == 0


# ---- the pages -------------------------------------------------------------------------------


def test_the_jobs_table_lists_every_job_with_its_status_recipe_and_scores(logged_in: Tab, live: LiveService):
    jobs = live.get("/v1/jobs")["items"]
    assert link_targets(logged_in, "table.jobs tbody td:nth-child(2) a") == [f"#/jobs/{job['id']}" for job in jobs]
    for row, job in zip(rows_of(logged_in, "table.jobs"), jobs, strict=True):
        _, _, status, recipe, base_model, _, best, _ = row
        assert (status, recipe, base_model) == (job["status"], job["recipe"], "tiny-bert")
        scores = job["metrics"]
        assert best == (
            f"acc {scores['accuracy']:.3f} · F1 {scores['macro_f1']:.3f} · test acc {scores['test']['accuracy']:.3f}"
        )
    logged_in.assert_readable()
    logged_in.save_screenshot("jobs-page.png")

    logged_in.page.click(f"table.jobs tbody tr:has(a[href='#/jobs/{jobs[0]['id']}']) td:nth-child(4)")
    logged_in.page.wait_for_selector("#loss-chart")
    assert logged_in.page.evaluate("location.hash") == f"#/jobs/{jobs[0]['id']}"


def test_only_confusion_cells_that_hold_examples_are_tinted(logged_in: Tab):
    # The component itself, on a matrix with empty cells on and off the diagonal: an empty cell off
    # it is no error and must not read as one.
    tints = logged_in.page.evaluate(
        """async () => {
            const { confusionMatrix } = await import("/ui/static/js/components/confusion_matrix.js");
            const table = confusionMatrix({ labels: ["a", "b", "c"], matrix: [[5, 0, 1], [0, 0, 2], [0, 3, 4]] });
            document.querySelector("main").append(table);
            const cells = [...table.querySelectorAll("td.cm-cell")];
            const tints = cells.map(c => [Number(c.dataset.count), getComputedStyle(c).backgroundColor]);
            table.remove();
            return tints;
        }"""
    )
    assert [count for count, _ in tints] == [5, 0, 1, 0, 0, 2, 0, 3, 4]
    for count, color in tints:
        assert (color != "rgba(0, 0, 0, 0)") == (count > 0), (count, color)


def test_small_shares_read_as_what_they_are_and_a_malformed_address_is_no_page(logged_in: Tab):
    shares, route = logged_in.page.evaluate(
        """async () => {
            const { share } = await import("/ui/static/js/format.js");
            const { resolve } = await import("/ui/static/js/router.js");
            // a linear head on MiniLM, LoRA, adapters, everything, a held-out fraction with float noise
            const shares = [0.000102, 0.0049, 0.0262, 1, 0.15000000000000002, 0].map(share);
            return [shares, resolve("#/jobs/%E0")];
        }"""
    )
    assert shares == ["0.01%", "0.49%", "2.6%", "100%", "15%", "0%"]
    assert route is None


def test_the_job_page_draws_the_jobs_own_curves_phases_matrix_and_events(logged_in: Tab, live: LiveService):
    job = live.jobs["fine_tuning"]
    metrics = job["metrics"]
    assert metrics.get("loss_curve"), "the engine records the training loss over steps"
    assert metrics["test"].get("confusion_matrix"), "the engine records the test set's confusion matrix"
    logged_in.page.evaluate(f"location.hash = '#/jobs/{job['id']}'")
    logged_in.page.wait_for_selector(".metrics-part[data-part=test] .confusion-matrix")

    loss = chart_series(logged_in, "loss-chart")
    assert loss == {"training loss": [{"x": p["step"], "y": p["loss"]} for p in metrics["loss_curve"]]}
    assert len(metrics["history"]) == TRAINING["epochs"]  # one evaluation per epoch
    assert chart_series(logged_in, "validation-chart") == {
        name: [{"x": h["step"], "y": h[name]} for h in metrics["history"]] for name in ("accuracy", "macro_f1")
    }

    counts = logged_in.page.eval_on_selector_all(
        ".metrics-part[data-part=test] td.cm-cell", "cells => cells.map(c => Number(c.dataset.count))"
    )
    assert sum(counts) == len(TEST_SET)
    assert counts == [count for row in metrics["test"]["confusion_matrix"]["matrix"] for count in row]

    # The phase map: a column per phase, a row per layer group, each trainable group's rate in its cell.
    phases = metrics["phases"]
    assert logged_in.page.locator(".phase-map thead th").count() == 1 + len(phases)
    rates = {group: cells for group, *cells in rows_of(logged_in, ".phase-map")}
    for column, phase in enumerate(phases):
        for group, rate in phase["learning_rates"].items():
            assert float(rates[group][column]) == pytest.approx(rate, rel=0.05), (group, phase)

    events = live.get(f"/v1/jobs/{job['id']}/events")["items"]
    logged = [(kind, message.split("\n")[0]) for _, kind, message in rows_of(logged_in, "table.event-log")]
    assert logged == [(e["kind"], e["message"]) for e in events]
    assert logged_in.page.get_attribute("#job-model-link", "href") == f"#/models/{job['model_id']}"
    logged_in.assert_readable()
    logged_in.save_screenshot("job-page.png")


def test_the_model_page_predicts_and_evaluates_as_the_api_does_and_shows_errors_verbatim(
    logged_in: Tab, live: LiveService
):
    model_id = live.jobs["fine_tuning"]["model_id"]
    card = live.get(f"/v1/models/{model_id}")
    logged_in.page.click("#nav a[data-section=models]")
    logged_in.page.wait_for_selector("table.models")
    listed = link_targets(logged_in, "table.models tbody td:first-child a")
    assert listed == [f"#/models/{model['id']}" for model in live.get("/v1/models")["items"]]
    logged_in.page.click(f"table.models a[href='#/models/{model_id}']")
    logged_in.page.wait_for_selector("#predict-form")
    facts = logged_in.page.inner_text(".facts")
    assert f"{card['trainable_params']:,} of {card['total_params']:,} (100%)" in facts and "tiny-bert" in facts
    # The card says how the model was chosen and calibrated.
    fitted = card["metrics"]["calibration"]
    shown = (
        f"temperature {fitted['temperature']:.2f}" if fitted["applied"] else f"none: {fitted['not_applied_because']}"
    )
    assert shown in facts
    assert f"{card['metrics']['best_epoch']}, then refit on all" in facts
    # A frozen encoder trains a sliver of the weights: its share reads as that, never "0%".
    frozen = live.get(f"/v1/models/{live.jobs['experiment feature_extraction']['model_id']}")
    logged_in.page.evaluate(f"location.hash = '#/models/{frozen['id']}'")
    logged_in.page.wait_for_selector(f"h1 >> text={frozen['id']}")
    percent = 100 * frozen["trainable_params"] / frozen["total_params"]
    assert percent < 10
    share = f"{float(f'{percent:.2g}'):g}%"
    assert f"{frozen['trainable_params']:,} of {frozen['total_params']:,} ({share})" in logged_in.page.inner_text(
        ".facts"
    )
    logged_in.page.evaluate(f"location.hash = '#/models/{model_id}'")
    logged_in.page.wait_for_selector(f"h1 >> text={model_id}")

    texts = ["what a wonderful and lovely film", "the plot was dreadful and the acting awful"]
    logged_in.page.fill("#predict-inputs", "\n".join(texts))
    logged_in.page.click("#predict-submit")
    logged_in.page.wait_for_selector("table.predictions")
    answer = live.post(f"/v1/models/{model_id}/predict", {"inputs": texts}).json()["predictions"]
    shown = rows_of(logged_in, "table.predictions")
    assert [row[:3] for row in shown] == [
        [text, p["label"], f"{p['score']:.3f}"] for text, p in zip(texts, answer, strict=True)
    ]
    logged_in.assert_readable()
    logged_in.save_screenshot("model-page.png")

    too_many = ["good"] * 257
    logged_in.page.fill("#predict-inputs", "\n".join(too_many))
    logged_in.page.click("#predict-submit")
    detail = live.post(f"/v1/models/{model_id}/predict", {"inputs": too_many}).json()["detail"]
    assert logged_in.page.wait_for_selector("#predict-output .error").inner_text() == detail

    # An evaluation on the job's test set runs on the worker; the page shows the report it stored.
    test_set = live.jobs["fine_tuning"]["spec"]["data"]["test"]
    logged_in.page.select_option("#evaluate-dataset", test_set)
    logged_in.page.click("#evaluate-submit")
    shown = logged_in.page.wait_for_selector("#evaluation-output .evaluation-report", timeout=120_000)
    (evaluation,) = live.get(f"/v1/models/{model_id}/evaluations")["items"]
    assert evaluation["dataset_id"] == test_set and shown.get_attribute("data-id") == evaluation["id"]
    assert f"{evaluation['result']['accuracy']:.3f}" in shown.inner_text()
    assert evaluation["result"]["accuracy"] == card["metrics"]["test"]["accuracy"]
    assert len(rows_of(logged_in, "table.evaluations")) == 1


def test_the_compare_page_puts_one_point_per_picked_job_on_the_tradeoff_charts(logged_in: Tab, live: LiveService):
    picked = [live.jobs["fine_tuning"], live.jobs["experiment feature_extraction"]]
    for job in picked:
        logged_in.page.check(f"input[aria-label='pick {job['id']}']")
    logged_in.page.click("#compare-jobs")
    logged_in.page.wait_for_selector("#tradeoff-params-chart")
    assert logged_in.page.evaluate("location.hash") == f"#/compare?ids={picked[0]['id']},{picked[1]['id']}"
    assert len(rows_of(logged_in, "table.compare")) == 2

    cards = [live.get(f"/v1/models/{job['model_id']}") for job in picked]
    # Every job had a test set, so the charts plot test accuracy.
    expected = [
        {"train_seconds": job["timings"]["train_seconds"], "params": card["trainable_params"],
         "accuracy": job["metrics"]["test"]["accuracy"], "recipe": job["recipe"]}
        for job, card in zip(picked, cards, strict=True)
    ]  # fmt: skip
    assert [e["recipe"] for e in expected] == ["fine_tuning", "feature_extraction"]
    assert chart_series(logged_in, "tradeoff-time-chart") == {
        "test accuracy": [{"x": e["train_seconds"], "y": e["accuracy"], "label": e["recipe"]} for e in expected]
    }
    assert chart_series(logged_in, "tradeoff-params-chart") == {
        "test accuracy": [{"x": e["params"], "y": e["accuracy"], "label": e["recipe"]} for e in expected]
    }
    scale = logged_in.page.evaluate("Chart.getChart('tradeoff-params-chart').scales.x.type")
    assert scale == "logarithmic"
    logged_in.assert_readable()
    logged_in.save_screenshot("compare-page.png")


def test_the_experiment_page_shows_the_leaderboard_and_one_point_per_variant(logged_in: Tab, live: LiveService):
    experiment = live.experiment
    board = experiment["leaderboard"]
    logged_in.page.click("#nav a[data-section=experiments]")
    logged_in.page.wait_for_selector("table.experiments tbody tr")
    # The list names each experiment's best variant with the metric it was ranked by.
    (listed,) = [row for row in rows_of(logged_in, "table.experiments") if row[0] == experiment["name"]]
    assert listed[5] == f"{board[0]['variant']} (accuracy {mean_std(board[0]['metrics']['accuracy'])})"
    logged_in.page.click(f"table.experiments a[href='#/experiments/{experiment['id']}']")
    logged_in.page.wait_for_selector("table.leaderboard")

    shown = rows_of(logged_in, "table.leaderboard")
    assert [(row[1], row[4]) for row in shown] == [(r["variant"], mean_std(r["metrics"]["accuracy"])) for r in board]
    accuracy = [r["metrics"]["accuracy"]["mean"] for r in board]
    [time_points] = chart_series(logged_in, "tradeoff-time-chart").values()
    [params_points] = chart_series(logged_in, "tradeoff-params-chart").values()
    assert time_points == [
        {"x": r["train_seconds"]["mean"], "y": y, "label": r["variant"]} for r, y in zip(board, accuracy, strict=True)
    ]
    assert params_points == [
        {"x": r["trainable_params"], "y": y, "label": r["variant"]} for r, y in zip(board, accuracy, strict=True)
    ]
    logged_in.assert_readable()
    logged_in.save_screenshot("experiment-page.png")


def test_a_running_job_is_drawn_live_and_paused_and_resumed_from_its_page(logged_in: Tab, live: LiveService):
    """Hundreds of small steps (seconds of training), so that the page finds the job running."""
    train = live.upload("long.csv", as_csv(sentiment(400, seed=4)))
    spec = {"base_model": "tiny-bert", "data": {"train": train}, "training": {**TRAINING, "epochs": 3, "batch_size": 2}}
    job_id = live.post("/v1/jobs", spec).json()["id"]
    wait_for(lambda: (live.get(f"/v1/jobs/{job_id}")["progress"] or {}).get("loss") is not None, timeout=60)
    page = logged_in.page
    page.evaluate(f"location.hash = '#/jobs/{job_id}'")

    # The job has no metrics yet: its loss points come from the progress the page polls.
    page.wait_for_function("() => Chart.getChart('loss-chart')?.data.datasets[0].data.length")
    page.click("#job-pause")
    page.wait_for_selector("#job-resume")
    assert badge(logged_in) == "paused"
    paused = live.get(f"/v1/jobs/{job_id}")
    assert paused["metrics"] is None and paused["progress"]["step"] < paused["progress"]["total_steps"]
    live_points = chart_series(logged_in, "loss-chart")["training loss"]
    assert live_points and all(0 < point["x"] <= paused["progress"]["step"] for point in live_points)

    page.click("#job-resume")
    page.wait_for_function("() => document.querySelector('h1 .badge')?.textContent === 'succeeded'", timeout=120_000)
    finished = live.get(f"/v1/jobs/{job_id}")
    # Finished, the page draws the curve the job recorded, not its own samples.
    loss = chart_series(logged_in, "loss-chart")["training loss"]
    assert loss == [{"x": p["step"], "y": p["loss"]} for p in finished["metrics"]["loss_curve"]]
    assert page.locator("#job-pause, #job-resume, #job-cancel").count() == 0
    kinds = [row[1] for row in rows_of(logged_in, "table.event-log")]
    assert kinds == [e["kind"] for e in live.get(f"/v1/jobs/{job_id}/events")["items"]]
    assert {"pause_requested", "paused", "resumed_requested", "succeeded"} <= set(kinds)
    logged_in.assert_readable()
