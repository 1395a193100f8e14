// Jobs, newest first: status, progress and best scores at a glance; refreshed while any job is
// queued or running; pick several to compare them.
import { api } from "../api.js";
import { errorBox, h, link, table } from "../dom.js";
import { dateTime, metric, shortId } from "../format.js";
import { pager } from "../components/pager.js";
import { ACTIVE, progressBar, statusBadge } from "../components/status.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 2000;

function bestScores(job) {
  const m = job.metrics;
  if (!m || m.accuracy == null) return "—";
  return h(
    "span",
    { class: "scores" },
    `acc ${metric(m.accuracy)} · F1 ${metric(m.macro_f1)}`,
    m.test?.accuracy != null ? h("small", { class: "muted" }, ` · test acc ${metric(m.test.accuracy)}`) : null,
  );
}

export async function render(root, { query, scope }) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const selected = new Set();
  const compare = h(
    "button",
    {
      type: "button",
      id: "compare-jobs",
      disabled: true,
      onClick: () => (location.hash = `#/compare?ids=${[...selected].join(",")}`),
    },
    "Compare",
  );
  const listing = h("div", {});
  const problem = h("div", {});
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Jobs"), compare),
    problem,
    h("section", { class: "card" }, listing),
  );

  const pick = (id, on) => {
    on ? selected.add(id) : selected.delete(id);
    compare.disabled = selected.size === 0;
    compare.textContent = selected.size ? `Compare ${selected.size}` : "Compare";
  };

  const columns = [
    {
      title: "",
      cell: (job) =>
        h("input", {
          type: "checkbox",
          class: "pick",
          "aria-label": `pick ${job.id}`,
          checked: selected.has(job.id),
          onChange: (e) => pick(job.id, e.target.checked),
        }),
    },
    { title: "job", cell: (job) => link(`#/jobs/${job.id}`, shortId(job.id)), class: "mono" },
    { title: "status", cell: (job) => statusBadge(job.status) },
    { title: "recipe", cell: (job) => job.recipe },
    { title: "base model", cell: (job) => job.base_model },
    { title: "progress", cell: (job) => progressBar(job.progress) },
    { title: "best", cell: bestScores },
    { title: "created", cell: (job) => dateTime(job.created_at), class: "nowrap" },
  ];

  async function load() {
    const page = await api.get(`/v1/jobs?limit=${PAGE_SIZE}&offset=${offset}`);
    const rows = table(columns, page.items, {
      className: "data jobs clickable",
      empty: "No jobs yet: submit one with POST /v1/jobs.",
    });
    // A click anywhere on a row opens the job, except on its checkbox or link.
    rows.querySelectorAll("tbody tr").forEach((tr, i) =>
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("input, a")) location.hash = `#/jobs/${page.items[i].id}`;
      }),
    );
    listing.replaceChildren(...[rows, pager("#/jobs", page)].filter(Boolean));
    problem.replaceChildren();
    return page.items.some((job) => ACTIVE.has(job.status));
  }

  if (await load()) {
    scope.repeat(REFRESH_MS, load, (error) => problem.replaceChildren(errorBox(error.message)));
  }
}
