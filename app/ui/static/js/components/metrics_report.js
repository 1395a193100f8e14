// A trained job's (or model's) final metrics: the kept epoch's validation scores and, when the job
// had a test set, the test scores; each with its per-class table and confusion matrix.
import { h } from "../dom.js";
import { integer, metric } from "../format.js";
import { confusionMatrix } from "./confusion_matrix.js";
import { perClassTable } from "./per_class_table.js";
import { statTiles } from "./stat_tiles.js";

function part(name, title, scores, hint) {
  if (!scores || scores.accuracy == null) return null;
  const tiles = [
    { label: "accuracy", value: metric(scores.accuracy), hint },
    { label: "macro-F1", value: metric(scores.macro_f1) },
    scores.micro_f1 != null && { label: "micro-F1", value: metric(scores.micro_f1) },
    scores.examples != null && { label: "examples", value: integer(scores.examples) },
  ].filter(Boolean);
  return h(
    "div",
    { class: "metrics-part", dataset: { part: name } },
    h("h3", {}, title),
    statTiles(tiles),
    perClassTable(scores.per_class),
    scores.confusion_matrix ? confusionMatrix(scores.confusion_matrix) : null,
  );
}

export function metricsReport(metrics) {
  if (!metrics) return h("p", { class: "muted empty" }, "No metrics yet: they come when the job succeeds.");
  const kept = metrics.best_epoch ? `kept epoch ${metrics.best_epoch}` : undefined;
  const parts = [part("validation", "Validation", metrics, kept), part("test", "Test", metrics.test)].filter(Boolean);
  if (!parts.length) return h("p", { class: "muted empty" }, "This job reported no accuracy.");
  return h("div", { class: "metrics-report" }, parts);
}
