// Trained models, newest first, with their headline scores and costs.
import { api } from "../api.js";
import { h, link, table } from "../dom.js";
import { bytes, compact, dateTime, metric, shortId } from "../format.js";
import { pager } from "../components/pager.js";

const PAGE_SIZE = 50;

export async function render(root, { query }) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const page = await api.get(`/v1/models?limit=${PAGE_SIZE}&offset=${offset}`);
  const columns = [
    { title: "model", cell: (m) => link(`#/models/${m.id}`, shortId(m.id)), class: "mono" },
    { title: "recipe", cell: (m) => m.spec?.recipe },
    { title: "base model", cell: (m) => m.base_model },
    { title: "labels", cell: (m) => m.labels.join(", ") },
    { title: "accuracy", cell: (m) => metric(m.metrics?.accuracy), class: "num" },
    { title: "test acc", cell: (m) => metric(m.metrics?.test?.accuracy), class: "num" },
    {
      title: "trainable / total params",
      cell: (m) => `${compact(m.trainable_params)} / ${compact(m.total_params)}`,
      class: "num",
    },
    { title: "size", cell: (m) => bytes(m.artifact_bytes), class: "num" },
    { title: "job", cell: (m) => link(`#/jobs/${m.job_id}`, shortId(m.job_id)), class: "mono" },
    { title: "created", cell: (m) => dateTime(m.created_at), class: "nowrap" },
  ];
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Models")),
    h(
      "section",
      { class: "card" },
      table(columns, page.items, { className: "data models", empty: "No models yet: a job that succeeds makes one." }),
      pager("#/models", page),
    ),
  );
}
