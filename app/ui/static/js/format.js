// How numbers, sizes, durations and times read on the dashboard. Missing values read "—".
const MISSING = "—";

export const metric = (value) => (value == null ? MISSING : Number(value).toFixed(3));

export function meanStd(summary) {
  if (summary?.mean == null) return MISSING;
  return summary.std == null ? metric(summary.mean) : `${metric(summary.mean)} ± ${metric(summary.std)}`;
}

export const integer = (value) => (value == null ? MISSING : Number(value).toLocaleString("en-US"));

export function compact(value) {
  if (value == null) return MISSING;
  return Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

export function bytes(value) {
  if (value == null) return MISSING;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = Number(value);
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function seconds(value) {
  if (value == null) return MISSING;
  const s = Number(value);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : MISSING);

export const learningRate = (value) => (value == null ? MISSING : Number(value).toExponential(1));

export const percent = (fraction) => (fraction == null ? MISSING : `${Math.round(Number(fraction) * 100)}%`);

// A share that may be tiny (trainable parameters: 0.01% for a linear head on MiniLM): whole percents
// from 10%, two significant digits below, so it never reads "0%" for something that trains.
export function share(fraction) {
  if (fraction == null) return MISSING;
  const value = Number(fraction) * 100;
  return `${value >= 10 || value === 0 ? Math.round(value) : Number(value.toPrecision(2))}%`;
}

// The metrics a leaderboard ranks by (`ranked_by`): micro-F1 for multi-label runs, whose accuracy
// is subset accuracy; accuracy otherwise.
export const METRIC_NAMES = { accuracy: "accuracy", micro_f1: "micro-F1" };

// Ids are long; tables show their tail, which is what differs between them.
export const shortId = (id) => (id && id.length > 14 ? `…${id.slice(-10)}` : id);
