// Jobs side by side (#/compare?ids=a,b,c): scores and costs in one table, and the trade-off
// charts: accuracy against training time and against trainable parameters, one point per job.
import { api } from "../api.js";
import { errorBox, h, link, section, table } from "../dom.js";
import { bytes, compact, metric, seconds, shortId } from "../format.js";
import { statusBadge } from "../components/status.js";
import { tradeoffCharts } from "../components/tradeoff_charts.js";

// A job and its model's card (trainable parameters and peak memory live on the card).
async function loadEntry(id) {
  try {
    const job = await api.get(`/v1/jobs/${encodeURIComponent(id)}`);
    const model = job.model_id ? await api.get(`/v1/models/${encodeURIComponent(job.model_id)}`) : null;
    return { id, job, model };
  } catch (error) {
    if (error.status === 401) throw error;
    return { id, error };
  }
}

// Test accuracy when every job has a test set; otherwise validation accuracy for all, so that the
// points on one chart are measured alike.
function accuracyOf(entries) {
  const useTest = entries.length > 0 && entries.every((e) => e.job.metrics?.test?.accuracy != null);
  return useTest
    ? { title: "test accuracy", of: (e) => e.job.metrics.test.accuracy }
    : { title: "validation accuracy", of: (e) => e.job.metrics?.accuracy ?? null };
}

// A point is named by its recipe; two jobs of one recipe are told apart by their ids.
function pointLabel(entry, entries) {
  const twins = entries.filter((e) => e.job.recipe === entry.job.recipe).length;
  return twins > 1 ? `${entry.job.recipe} ${shortId(entry.id)}` : entry.job.recipe;
}

export async function render(root, { query, scope }) {
  const ids = [...new Set((query.get("ids") ?? "").split(",").filter(Boolean))];
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Compare jobs")));
  if (!ids.length) {
    root.append(h("p", { class: "muted" }, "Pick jobs on the ", link("#/jobs", "jobs page"), " and press Compare."));
    return;
  }
  const loaded = await Promise.all(ids.map(loadEntry));
  const entries = loaded.filter((e) => e.job);
  const accuracy = accuracyOf(entries);
  const columns = [
    { title: "job", cell: (e) => link(`#/jobs/${e.id}`, shortId(e.id)), class: "mono" },
    { title: "status", cell: (e) => statusBadge(e.job.status) },
    { title: "recipe", cell: (e) => e.job.recipe },
    { title: "val. accuracy", cell: (e) => metric(e.job.metrics?.accuracy), class: "num" },
    { title: "val. macro-F1", cell: (e) => metric(e.job.metrics?.macro_f1), class: "num" },
    { title: "test accuracy", cell: (e) => metric(e.job.metrics?.test?.accuracy), class: "num" },
    { title: "train time", cell: (e) => seconds(e.job.timings.train_seconds), class: "num" },
    { title: "trainable params", cell: (e) => compact(e.model?.trainable_params), class: "num" },
    { title: "peak memory", cell: (e) => bytes(e.model?.peak_memory_bytes), class: "num" },
  ];
  const points = entries.map((e) => ({
    label: pointLabel(e, entries),
    accuracy: accuracy.of(e),
    trainSeconds: e.job.timings.train_seconds,
    trainableParams: e.model?.trainable_params ?? null,
  }));
  root.append(
    ...loaded.filter((e) => e.error).map((e) => errorBox(`${e.id}: ${e.error.message}`)),
    section("Side by side", table(columns, entries, { className: "data compare" })),
    section(
      "Trade-offs",
      h("p", { class: "muted" }, `One point per job; ${accuracy.title}.`),
      tradeoffCharts(points, scope, { accuracyTitle: accuracy.title }),
    ),
  );
}
