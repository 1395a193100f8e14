// A confusion matrix {labels, matrix} as a heat-mapped table: rows are gold labels, columns the
// predicted ones, in `labels` order; the darker a cell, the more examples it holds.
import { h } from "../dom.js";

export function confusionMatrix({ labels, matrix }) {
  const largest = Math.max(1, ...matrix.flat());
  const cell = (count, hit) => {
    if (count === 0) {
      // Untinted: an empty cell off the diagonal is no error, and one on it is no hit.
      return h("td", { class: "cm-cell cm-empty", dataset: { count: "0" } }, "0");
    }
    const heat = count / largest;
    return h(
      "td",
      {
        class: `cm-cell ${hit ? "cm-hit" : "cm-miss"}${heat > 0.55 ? " cm-dark" : ""}`,
        dataset: { count: String(count) },
        // The hue says right (diagonal) or wrong; the strength says how many.
        style: { backgroundColor: `rgba(${hit ? "37, 99, 235" : "220, 38, 38"}, ${0.08 + 0.82 * heat})` },
      },
      String(count),
    );
  };
  return h(
    "table",
    { class: "confusion-matrix" },
    h("caption", {}, "rows: gold label · columns: predicted"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, ""),
        labels.map((label) => h("th", { scope: "col" }, label)),
      ),
    ),
    h(
      "tbody",
      {},
      matrix.map((row, i) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, labels[i]),
          row.map((count, j) => cell(count, i === j)),
        ),
      ),
    ),
  );
}
