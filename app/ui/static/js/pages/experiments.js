// Experiments: several variants of a job, each run over several seeds, ranked on a leaderboard.
import { api } from "../api.js";
import { h, link, table } from "../dom.js";
import { METRIC_NAMES, dateTime, meanStd } from "../format.js";
import { FINISHED, statusBadge } from "../components/status.js";

// A server without the experiments API answers 404 for the whole collection.
function notAvailable(error) {
  return h(
    "p",
    { class: "muted empty", id: "experiments-unavailable" },
    `This server has no experiments API (${error.message}).`,
  );
}

const best = (experiment) => experiment.leaderboard?.[0];
// The best variant's score in the metric it was ranked by.
function bestScore(row) {
  const metric = row.ranked_by ?? "accuracy";
  return `${METRIC_NAMES[metric]} ${meanStd(row.metrics?.[metric])}`;
}

function runsDone({ runs = [] }) {
  return `${runs.filter((r) => FINISHED.has(r.status)).length} / ${runs.length}`;
}

export async function render(root) {
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Experiments")));
  let page;
  try {
    page = await api.get("/v1/experiments?limit=50");
  } catch (error) {
    if (error.status !== 404) throw error;
    root.append(h("section", { class: "card" }, notAvailable(error)));
    return;
  }
  const columns = [
    { title: "experiment", cell: (x) => link(`#/experiments/${x.id}`, x.name || x.id) },
    { title: "status", cell: (x) => statusBadge(x.status) },
    { title: "variants", cell: (x) => String(x.leaderboard?.length ?? 0), class: "num" },
    { title: "seeds", cell: (x) => (x.seeds ?? []).join(", ") },
    { title: "runs done", cell: runsDone, class: "num" },
    {
      title: "best variant",
      cell: (x) => (best(x) ? `${best(x).variant} (${bestScore(best(x))})` : "—"),
    },
    { title: "created", cell: (x) => dateTime(x.created_at), class: "nowrap" },
  ];
  root.append(
    h(
      "section",
      { class: "card" },
      table(columns, page.items, { className: "data experiments", empty: "No experiments yet." }),
    ),
  );
}
