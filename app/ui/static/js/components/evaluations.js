// The model's evaluations: run one on a labeled dataset (a worker scores it; the panel follows its
// progress), then its report; below, the model's past evaluations.
import { api } from "../api.js";
import { errorBox, facts, h, table } from "../dom.js";
import { dateTime, integer, metric } from "../format.js";
import { confusionMatrix } from "./confusion_matrix.js";
import { perClassTable } from "./per_class_table.js";
import { ACTIVE, statusBadge } from "./status.js";

const POLL_MS = 1000;

function report(run) {
  const result = run.result;
  return h(
    "div",
    { class: "evaluation-report", dataset: { id: run.id } },
    facts([
      ["evaluation", run.id],
      ["dataset", run.dataset_id],
      ["examples", integer(result.examples)],
      ["accuracy", metric(result.accuracy)],
      ["macro-F1", metric(result.macro_f1)],
      ["ECE", result.ece == null ? "—" : metric(result.ece)],
    ]),
    perClassTable(result.per_class),
    result.confusion_matrix ? confusionMatrix(result.confusion_matrix) : null,
  );
}

function history(runs) {
  return table(
    [
      { title: "evaluation", cell: (r) => h("span", { class: "mono" }, r.id) },
      { title: "dataset", cell: (r) => r.dataset_id },
      { title: "status", cell: (r) => statusBadge(r.status) },
      { title: "accuracy", cell: (r) => (r.result ? metric(r.result.accuracy) : r.error ?? "—"), class: "num" },
      { title: "macro-F1", cell: (r) => (r.result ? metric(r.result.macro_f1) : "—"), class: "num" },
      { title: "created", cell: (r) => dateTime(r.created_at) },
    ],
    runs,
    { className: "data evaluations", empty: "No evaluations yet." },
  );
}

export async function evaluationsPanel(model) {
  const path = `/v1/models/${encodeURIComponent(model.id)}/evaluations`;
  const labeled = (await api.get("/v1/datasets?limit=200")).items.filter((d) => d.label_field);
  const select = h(
    "select",
    { id: "evaluate-dataset" },
    labeled.map((d) => h("option", { value: d.id }, `${d.name} (${d.id}, ${d.rows} rows)`)),
  );
  const button = h("button", { type: "submit", id: "evaluate-submit", disabled: !labeled.length }, "Evaluate");
  const output = h("div", { id: "evaluation-output" });
  const list = h("div", { id: "evaluations-list" });
  const refresh = async () => list.replaceChildren(history((await api.get(path)).items));

  async function submit(event) {
    event.preventDefault();
    button.disabled = true;
    try {
      let run = await api.post(path, { dataset: select.value });
      while (ACTIVE.has(run.status)) {
        const done = run.progress ? `${integer(run.progress.rows_done)} of ${integer(run.progress.rows)} rows` : "";
        output.replaceChildren(h("p", {}, statusBadge(run.status), " ", done));
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        run = await api.get(`/v1/evaluations/${encodeURIComponent(run.id)}`);
      }
      output.replaceChildren(run.status === "succeeded" ? report(run) : errorBox(run.error));
      await refresh();
    } catch (error) {
      output.replaceChildren(errorBox(error.message));
    } finally {
      button.disabled = false;
    }
  }

  await refresh();
  return h(
    "div",
    {},
    h(
      "form",
      { class: "predict", id: "evaluate-form", onSubmit: submit },
      h("label", { for: "evaluate-dataset" }, "Score the model on a labeled dataset"),
      select,
      h("div", {}, button),
    ),
    output,
    list,
  );
}
