// Precision, recall, F1 and support of every class (or, for multi-label jobs, every label).
import { table } from "../dom.js";
import { integer, metric } from "../format.js";

const ORDER = ["precision", "recall", "f1", "support"];

export function perClassTable(perClass) {
  const rows = Object.entries(perClass ?? {});
  if (!rows.length) return null;
  const keys = [...new Set(rows.flatMap(([, values]) => Object.keys(values)))];
  keys.sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
  return table(
    [
      { title: "class", cell: ([label]) => label },
      ...keys.map((key) => ({
        title: key,
        class: "num",
        cell: ([, values]) => (key === "support" ? integer(values[key]) : metric(values[key])),
      })),
    ],
    rows,
    { className: "data per-class" },
  );
}
