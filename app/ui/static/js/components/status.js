// A job's (or experiment's) status as a coloured badge, and its progress as a bar.
import { h } from "../dom.js";
import { percent, seconds } from "../format.js";

export const ACTIVE = new Set(["queued", "running"]);
export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

// "training · epoch 2/4 · step 30/68"
export function progressText(progress) {
  if (!progress) return "";
  const parts = [progress.stage];
  if (progress.epoch != null && progress.epochs != null) parts.push(`epoch ${progress.epoch}/${progress.epochs}`);
  if (progress.step != null && progress.total_steps != null)
    parts.push(`step ${progress.step}/${progress.total_steps}`);
  return parts.filter(Boolean).join(" · ");
}

export function progressBar(progress, { detailed = false } = {}) {
  const fraction = Math.max(0, Math.min(1, progress?.fraction ?? 0));
  const bar = h(
    "div",
    { class: "progress", title: percent(fraction) },
    h("div", { class: "progress-fill", style: { width: `${fraction * 100}%` } }),
  );
  const lines = [progressText(progress)];
  if (detailed && progress) {
    if (progress.eta_seconds != null && fraction < 1) lines.push(`about ${seconds(progress.eta_seconds)} left`);
    if (progress.loss != null) lines.push(`loss ${Number(progress.loss).toFixed(4)}`);
    if (progress.learning_rate != null) lines.push(`lr ${Number(progress.learning_rate).toExponential(2)}`);
  }
  return h("div", { class: "progress-cell" }, bar, h("small", { class: "muted" }, lines.filter(Boolean).join(" · ")));
}
