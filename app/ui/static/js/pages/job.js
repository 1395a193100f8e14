// One job: status and actions, spec and timings, learning curves, the phases of its schedule,
// final metrics and the event log. Polled while the job can still change.
import { api } from "../api.js";
import { errorBox, facts, h, link, section } from "../dom.js";
import { dateTime, integer, learningRate, seconds, share } from "../format.js";
import { eventLog } from "../components/event_log.js";
import { LearningCurves } from "../components/learning_curves.js";
import { metricsReport } from "../components/metrics_report.js";
import { phaseMap } from "../components/phase_map.js";
import { FINISHED, progressBar, statusBadge } from "../components/status.js";

const REFRESH_MS = 1500;

// Which action each status allows (the API answers 409 otherwise).
const ACTIONS = [
  { name: "pause", label: "Pause", allowed: ["queued", "running"] },
  { name: "resume", label: "Resume", allowed: ["paused"] },
  {
    name: "cancel",
    label: "Cancel",
    allowed: ["queued", "running", "paused"],
    confirm: "Cancel this job? It will not produce a model.",
  },
];

function specSummary(spec) {
  const { data = {}, training = {}, optimization = {} } = spec;
  const name = (unit) => (typeof unit === "string" ? unit : unit?.name);
  return facts([
    ["recipe", spec.recipe],
    ["base model", spec.base_model],
    ["task", spec.task],
    ["train data", data.train],
    [
      "validation",
      data.validation ?? (data.validation_fraction ? `${share(data.validation_fraction)} of train held out` : "none"),
    ],
    ["test data", data.test],
    ["trains", optimization.train],
    ["unfreezing", name(optimization.unfreezing)],
    ["lr schedule", name(optimization.lr_schedule)],
    ["epochs", training.epochs],
    ["batch size", training.batch_size],
    ["learning rate", learningRate(training.learning_rate)],
    ["eval metric", training.eval_metric],
  ]);
}

function timings(job) {
  return facts([
    ["created", dateTime(job.created_at)],
    ["started", job.started_at && dateTime(job.started_at)],
    ["finished", job.finished_at && dateTime(job.finished_at)],
    ["queued for", seconds(job.timings.queued_seconds)],
    ["training", seconds(job.timings.train_seconds)],
    ["total", seconds(job.timings.total_seconds)],
    ["attempts", integer(job.attempts)],
  ]);
}

function header(job, onAction) {
  const buttons = ACTIONS.filter((a) => a.allowed.includes(job.status)).map((action) =>
    h(
      "button",
      {
        type: "button",
        class: action.name === "cancel" ? "danger" : "secondary",
        id: `job-${action.name}`,
        onClick: () => onAction(action),
      },
      action.label,
    ),
  );
  const model = job.model_id
    ? h("a", { class: "button", id: "job-model-link", href: `#/models/${job.model_id}` }, "Open model")
    : null;
  return [
    h("h1", {}, "Job ", h("span", { class: "mono" }, job.id), " ", statusBadge(job.status)),
    h("div", { class: "actions" }, model, buttons),
  ];
}

// The job's own error, what the user's last action was refused for, and a stop on its way.
function notes(job, refusal) {
  const stopping =
    job.status === "running" && (job.cancel_requested ? "Cancellation" : job.pause_requested ? "Pause" : null);
  return [
    refusal && errorBox(refusal),
    job.error && errorBox(job.error),
    stopping &&
      h("p", { class: "muted", id: "job-stopping" }, `${stopping} requested: the job stops at its next step.`),
  ].filter(Boolean);
}

export async function render(root, { params, scope }) {
  const path = `/v1/jobs/${encodeURIComponent(params.id)}`;
  const curves = new LearningCurves(scope);
  const parts = {
    head: h("div", { class: "page-head" }),
    problem: h("div", {}),
    progress: h("div", {}),
    summary: h("div", { class: "two-columns" }),
    phases: h("div", {}),
    metrics: h("div", {}),
    events: h("div", {}),
  };
  root.append(
    parts.head,
    parts.problem,
    parts.progress,
    parts.summary,
    section("Learning curves", curves.element),
    section("Schedule phases", parts.phases),
    section("Final metrics", parts.metrics),
    section("Event log", parts.events),
  );
  let refusal = null; // the API's answer to the last action, when it refused it (409: not in that state)
  const showProblem = (error) => error.status !== 401 && parts.problem.replaceChildren(errorBox(error.message));

  async function act(action) {
    if (action.confirm && !window.confirm(action.confirm)) return;
    refusal = null;
    try {
      await api.post(`${path}/${action.name}`);
    } catch (error) {
      if (error.status === 401) return;
      refusal = error.message;
    }
    await refresh().catch(showProblem);
  }

  function show(job, events) {
    parts.head.replaceChildren(...header(job, act));
    parts.problem.replaceChildren(...notes(job, refusal));
    const running = !FINISHED.has(job.status);
    parts.progress.replaceChildren(running ? section("Progress", progressBar(job.progress, { detailed: true })) : "");
    parts.summary.replaceChildren(section("Spec", specSummary(job.spec)), section("Timings", timings(job)));
    curves.update(job, events);
    const phases = job.metrics?.phases ?? events.filter((e) => e.kind === "phase").map((e) => e.data);
    // A job shorter than one progress interval never reported its total: its loss curve knows it.
    const totalSteps = job.progress?.total_steps ?? job.metrics?.loss_curve?.at(-1)?.step;
    parts.phases.replaceChildren(phaseMap(phases, totalSteps));
    parts.metrics.replaceChildren(metricsReport(job.metrics));
    parts.events.replaceChildren(eventLog(events));
  }

  async function refresh() {
    const [job, events] = await Promise.all([api.get(path), api.get(`${path}/events`)]);
    show(job, events.items);
    return !FINISHED.has(job.status);
  }

  if (await refresh()) {
    scope.repeat(REFRESH_MS, refresh, showProblem);
  }
}
