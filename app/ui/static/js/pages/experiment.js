// One experiment: its leaderboard (mean ± std over seeds), the trade-off charts with one point
// per variant, and its runs. Polled while it runs.
import { api } from "../api.js";
import { errorBox, h, link, section, table } from "../dom.js";
import { METRIC_NAMES, bytes, compact, dateTime, meanStd, seconds, shortId } from "../format.js";
import { FINISHED, statusBadge } from "../components/status.js";
import { tradeoffCharts } from "../components/tradeoff_charts.js";
import { PageScope } from "../scope.js";

const REFRESH_MS = 3000;
const ENDED = new Set([...FINISHED, "partial"]); // partial: finished, some runs failed or cancelled

function secondsSpread(spread) {
  if (spread?.mean == null) return "—";
  return spread.std == null ? seconds(spread.mean) : `${seconds(spread.mean)} ± ${seconds(spread.std)}`;
}

// What the leaderboard ranked by (the rows agree; a row without runs done has none yet).
const rankedBy = (rows) => rows.find((r) => r.ranked_by)?.ranked_by ?? "accuracy";
const score = (row, metric) => row.metrics?.[row.ranked_by ?? metric];

function leaderboard(rows) {
  const metric = rankedBy(rows);
  return table(
    [
      { title: "#", cell: (r) => String(r.rank), class: "num" },
      { title: "variant", cell: (r) => r.variant },
      { title: "recipe", cell: (r) => r.recipe },
      { title: "runs done", cell: (r) => `${r.finished} / ${r.runs}`, class: "num" },
      { title: METRIC_NAMES[metric], cell: (r) => meanStd(score(r, metric)), class: "num" },
      { title: "macro-F1", cell: (r) => meanStd(r.metrics?.macro_f1), class: "num" },
      { title: "on", cell: (r) => r.evaluated_on ?? "—" },
      { title: "train time", cell: (r) => secondsSpread(r.train_seconds), class: "num" },
      { title: "trainable params", cell: (r) => compact(r.trainable_params), class: "num" },
      { title: "peak memory", cell: (r) => bytes(r.peak_memory_bytes?.mean), class: "num" },
    ],
    rows.map((row, i) => ({ ...row, rank: i + 1 })),
    { className: "data leaderboard", empty: "No variant has finished a run yet." },
  );
}

function runs(items) {
  return table(
    [
      { title: "job", cell: (r) => link(`#/jobs/${r.job_id}`, shortId(r.job_id)), class: "mono" },
      { title: "variant", cell: (r) => r.variant },
      { title: "seed", cell: (r) => String(r.seed), class: "num" },
      { title: "status", cell: (r) => statusBadge(r.status) },
    ],
    items,
    { className: "data runs" },
  );
}

// The metric the leaderboard ranked by: test where the variants were tested, else validation.
function accuracyTitle(rows) {
  const on = new Set(rows.map((r) => r.evaluated_on).filter(Boolean));
  const name = METRIC_NAMES[rankedBy(rows)];
  return on.size === 1 ? `${[...on][0]} ${name} (mean)` : `${name} (mean)`;
}

export async function render(root, { params, scope }) {
  const path = `/v1/experiments/${encodeURIComponent(params.id)}`;
  const body = h("div", {});
  const problem = h("div", {});
  root.append(problem, body);
  let shown = null;
  let charts = null; // the charts' own scope: they are drawn again when the leaderboard changes

  function show(experiment) {
    charts?.leave();
    charts = new PageScope();
    const rows = experiment.leaderboard ?? [];
    const points = rows.map((r) => ({
      label: r.variant,
      accuracy: score(r, rankedBy(rows))?.mean,
      trainSeconds: r.train_seconds?.mean,
      trainableParams: r.trainable_params,
    }));
    const jobIds = (experiment.runs ?? []).map((r) => r.job_id);
    body.replaceChildren(
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, experiment.name || experiment.id, " ", statusBadge(experiment.status)),
        jobIds.length
          ? h("a", { class: "button", href: `#/compare?ids=${jobIds.join(",")}` }, "Compare its runs")
          : null,
      ),
      h(
        "p",
        { class: "muted" },
        `seeds ${(experiment.seeds ?? []).join(", ")} · created ${dateTime(experiment.created_at)}`,
      ),
      section("Leaderboard", leaderboard(rows)),
      section(
        "Trade-offs",
        h("p", { class: "muted" }, "One point per variant."),
        tradeoffCharts(points, charts, { accuracyTitle: accuracyTitle(rows) }),
      ),
      section("Runs", runs(experiment.runs ?? [])),
    );
  }

  async function refresh() {
    const experiment = await api.get(path);
    const seen = JSON.stringify(experiment);
    if (seen !== shown) {
      shown = seen;
      show(experiment);
    }
    problem.replaceChildren();
    return !ENDED.has(experiment.status);
  }

  scope.onLeave(() => charts?.leave());
  if (await refresh()) {
    scope.repeat(REFRESH_MS, refresh, (error) => problem.replaceChildren(errorBox(error.message)));
  }
}
