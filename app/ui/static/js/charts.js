// Thin wrappers over the vendored Chart.js (the global `Chart`): the dashboard's line and scatter
// charts, styled alike. Tests read a chart's data back with Chart.getChart(canvas).
import { h } from "./dom.js";
import { compact } from "./format.js";

export const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

// A canvas in a box that sets its size (Chart.js fills its parent when maintainAspectRatio is off).
export function chartCanvas(id, label) {
  const canvas = h("canvas", { id, role: "img", "aria-label": label });
  return { canvas, box: h("div", { class: "chart-box" }, canvas) };
}

function axis(title, extra = {}) {
  return { title: { display: true, text: title }, ...extra };
}

// Chart.js must be gone with its page: a chart left behind keeps observing a detached canvas.
function own(scope, chart) {
  scope.onLeave(() => chart.destroy());
  return chart;
}

// series: [{label, points: [{x, y}]}]; x is a step count.
export function lineChart(canvas, scope, { xTitle, yTitle, series, yRange = {} }) {
  const datasets = series.map((s, i) => ({
    label: s.label,
    data: s.points,
    borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length],
    borderWidth: 2,
    pointRadius: s.points.length > 60 ? 0 : 3,
    tension: 0, // straight segments: a smoothed curve would show values that were never measured
  }));
  return own(
    scope,
    new Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", intersect: false },
        scales: { x: axis(xTitle, { type: "linear", min: 0 }), y: axis(yTitle, yRange) },
      },
    }),
  );
}

// Replaces the points of each series in place (no new chart, no flicker while a job runs).
export function setSeries(chart, seriesPoints) {
  seriesPoints.forEach((points, i) => {
    chart.data.datasets[i].data = points;
    chart.data.datasets[i].pointRadius = points.length > 60 ? 0 : 3;
  });
  chart.update("none");
}

// Writes each point's `label` next to it: a trade-off chart is read by which point is which.
const pointLabels = {
  id: "thawPointLabels",
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    ctx.save();
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "#1f2937";
    chart.data.datasets.forEach((dataset, d) => {
      chart.getDatasetMeta(d).data.forEach((element, i) => {
        const label = dataset.data[i]?.label;
        if (label) ctx.fillText(label, element.x + 7, element.y - 7);
      });
    });
    ctx.restore();
  },
};

// Labels on powers of ten only ("1K", "1M"): the steps between them crowd the axis.
const LOG_AXIS = {
  type: "logarithmic",
  ticks: { callback: (value) => (Number.isInteger(Math.log10(value)) ? compact(value) : "") },
};

// points: [{x, y, label}], one dataset; logX for quantities spanning orders of magnitude.
export function scatterChart(canvas, scope, { xTitle, yTitle, points, logX = false }) {
  return own(
    scope,
    new Chart(canvas, {
      type: "scatter",
      data: {
        datasets: [{ label: yTitle, data: points, backgroundColor: PALETTE[0], pointRadius: 6, pointHoverRadius: 8 }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        layout: { padding: { right: 80, top: 16 } }, // room for the labels of the outermost points
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (item) => `${item.raw.label}: ${item.formattedValue}` } },
        },
        scales: {
          x: axis(xTitle, logX ? LOG_AXIS : { type: "linear", grace: "5%" }),
          y: axis(yTitle, { grace: "5%" }),
        },
      },
      plugins: [pointLabels],
    }),
  );
}
