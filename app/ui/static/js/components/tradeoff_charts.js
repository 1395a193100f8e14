// The trade-off charts: accuracy against training time, and against trainable parameters (log
// scale), one labelled point per job or variant. Points lacking a coordinate are left out and said so.
import { h } from "../dom.js";
import { chartCanvas, scatterChart } from "../charts.js";

// points: [{label, accuracy, trainSeconds, trainableParams}]; accuracyTitle says which accuracy.
export function tradeoffCharts(points, scope, { accuracyTitle }) {
  const time = chartCanvas("tradeoff-time-chart", `${accuracyTitle} against training time`);
  const params = chartCanvas("tradeoff-params-chart", `${accuracyTitle} against trainable parameters`);
  const plotted = (xKey) =>
    points
      .filter((p) => p.accuracy != null && p[xKey] != null)
      .map((p) => ({ x: p[xKey], y: p.accuracy, label: p.label }));
  const note = (xKey, what) => {
    const missing = points.length - plotted(xKey).length;
    return missing ? h("p", { class: "muted note" }, `${missing} without ${what} not drawn`) : null;
  };
  const element = h(
    "div",
    { class: "chart-pair" },
    h(
      "figure",
      {},
      h("figcaption", {}, `${accuracyTitle} vs training time`),
      time.box,
      note("trainSeconds", "a training time or accuracy"),
    ),
    h(
      "figure",
      {},
      h("figcaption", {}, `${accuracyTitle} vs trainable parameters`),
      params.box,
      note("trainableParams", "a parameter count or accuracy"),
    ),
  );
  scatterChart(time.canvas, scope, {
    xTitle: "training seconds",
    yTitle: accuracyTitle,
    points: plotted("trainSeconds"),
  });
  scatterChart(params.canvas, scope, {
    xTitle: "trainable parameters (log scale)",
    yTitle: accuracyTitle,
    points: plotted("trainableParams"),
    logX: true,
  });
  return element;
}
