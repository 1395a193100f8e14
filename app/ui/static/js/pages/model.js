// One model: its card, its metrics, a box to try predictions on texts typed in, and its evaluations.
import { api } from "../api.js";
import { errorBox, facts, h, link, section, table } from "../dom.js";
import { bytes, dateTime, integer, metric, seconds, share } from "../format.js";
import { evaluationsPanel } from "../components/evaluations.js";
import { metricsReport } from "../components/metrics_report.js";

function card(model) {
  const trained = model.total_params ? ` (${share(model.trainable_params / model.total_params)})` : "";
  return facts([
    ["base model", model.base_model],
    ["recipe", model.spec?.recipe],
    ["chosen by auto", model.spec?.recipe_choice?.reason ?? "— (named in the spec)"],
    ["job", link(`#/jobs/${model.job_id}`, model.job_id)],
    ["labels", model.labels.join(", ")],
    ["trainable params", `${integer(model.trainable_params)} of ${integer(model.total_params)}${trained}`],
    ["artifact size", bytes(model.artifact_bytes)],
    ["peak memory", bytes(model.peak_memory_bytes)],
    ["training time", seconds(model.train_seconds)],
    ["kept epoch", keptEpoch(model.metrics)],
    ["calibration", calibration(model.metrics)],
    ["abstains below", model.spec?.abstain_below ?? "never"],
    ["created", dateTime(model.created_at)],
  ]);
}

function keptEpoch(metrics) {
  if (metrics?.best_epoch == null) return "—";
  const refit = metrics.refit;
  return refit ? `${metrics.best_epoch}, then refit on all ${integer(refit.train_examples)} rows` : `${metrics.best_epoch}`;
}

// Temperature scaling (Guo et al. 2017): the fitted temperature and the ECE it took from and to.
function calibration(metrics) {
  const fitted = metrics?.calibration;
  if (!fitted) return "none";
  if (fitted.applied === false) return `none: ${fitted.not_applied_because}`;
  const test = metrics.test?.ece_uncalibrated != null ? `; test ECE ${metric(metrics.test.ece_uncalibrated)} → ${metric(metrics.test.ece)}` : "";
  return `temperature ${fitted.temperature.toFixed(2)}; validation ECE ${metric(fitted.validation_ece_before)} → ${metric(fitted.validation_ece_after)}${test}`;
}

// A sentence-pair model takes [first, second]: one pair per line, the two separated by a tab.
function inputsOf(text, takesPairs) {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  return takesPairs ? lines.map((line) => line.split("\t", 2)) : lines;
}

function scoreBars(scores) {
  return h(
    "div",
    { class: "score-bars" },
    Object.entries(scores)
      .sort(([, a], [, b]) => b - a)
      .map(([label, score]) =>
        h(
          "div",
          { class: "score-bar", title: `${label}: ${score}` },
          h("span", { class: "score-label" }, label),
          h("span", { class: "score-track" }, h("span", { class: "score-fill", style: { width: `${score * 100}%` } })),
          h("span", { class: "num" }, metric(score)),
        ),
      ),
  );
}

function predictionsTable(inputs, predictions) {
  const rows = predictions.map((prediction, i) => ({ input: inputs[i], ...prediction }));
  const multiLabel = rows.some((r) => r.labels != null);
  return table(
    [
      { title: "text", cell: (r) => (Array.isArray(r.input) ? r.input.join(" ‖ ") : r.input) },
      { title: "label", cell: (r) => h("strong", { class: "prediction-label" }, r.label ?? "— (abstained)") },
      multiLabel && { title: "labels above threshold", cell: (r) => (r.labels ?? []).join(", ") },
      { title: "score", cell: (r) => metric(r.score), class: "num" },
      { title: "scores", cell: (r) => scoreBars(r.scores) },
    ].filter(Boolean),
    rows,
    { className: "data predictions" },
  );
}

function predictBox(model) {
  const takesPairs = (model.spec?.text_fields ?? []).length === 2;
  const textarea = h("textarea", {
    id: "predict-inputs",
    rows: 5,
    placeholder: takesPairs ? "first text<TAB>second text, one pair per line" : "one text per line",
  });
  const output = h("div", { id: "predict-output" });
  const button = h("button", { type: "submit", id: "predict-submit" }, "Predict");
  async function submit(event) {
    event.preventDefault();
    const inputs = inputsOf(textarea.value, takesPairs);
    button.disabled = true;
    try {
      const answer = await api.post(`/v1/models/${encodeURIComponent(model.id)}/predict`, { inputs });
      output.replaceChildren(predictionsTable(inputs, answer.predictions));
    } catch (error) {
      output.replaceChildren(errorBox(error.message));
    } finally {
      button.disabled = false;
    }
  }
  return h(
    "form",
    { class: "predict", id: "predict-form", onSubmit: submit },
    h("label", { for: "predict-inputs" }, takesPairs ? "Pairs to classify" : "Texts to classify"),
    textarea,
    h("div", {}, button),
    output,
  );
}

export async function render(root, { params }) {
  const model = await api.get(`/v1/models/${encodeURIComponent(params.id)}`);
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Model ", h("span", { class: "mono" }, model.id))),
    h("div", { class: "two-columns" }, section("Card", card(model)), section("Try it", predictBox(model))),
    section("Metrics", metricsReport(model.metrics)),
    section("Evaluations", await evaluationsPanel(model)),
  );
}
