// A job's learning curves: training loss over steps, and validation metrics over steps.
//
// A finished job's metrics hold both curves (`loss_curve`, `history`). While it runs they do not
// exist yet, so the page builds them as it polls: each progress report adds a loss point, and each
// `evaluated` event is one validation point.
import { h } from "../dom.js";
import { chartCanvas, lineChart, PALETTE, setSeries } from "../charts.js";

const VALIDATION_METRICS = ["accuracy", "macro_f1", "micro_f1"];

export class LearningCurves {
  #liveLoss = new Map(); // step -> mean loss since the previous report
  #metrics = ["accuracy", "macro_f1"];

  constructor(scope) {
    const loss = chartCanvas("loss-chart", "training loss over steps");
    const validation = chartCanvas("validation-chart", "validation metrics over steps");
    this.lossNote = h("p", { class: "muted note" });
    this.validationNote = h("p", { class: "muted note" });
    this.element = h(
      "div",
      { class: "chart-pair" },
      h("figure", {}, h("figcaption", {}, "Training loss"), loss.box, this.lossNote),
      h("figure", {}, h("figcaption", {}, "Validation"), validation.box, this.validationNote),
    );
    this.lossChart = lineChart(loss.canvas, scope, {
      xTitle: "step",
      yTitle: "loss",
      series: [{ label: "training loss", points: [] }],
    });
    this.validationChart = lineChart(validation.canvas, scope, {
      xTitle: "step",
      yTitle: "score",
      yRange: { suggestedMin: 0, suggestedMax: 1 },
      series: this.#metrics.map((name) => ({ label: name, points: [] })),
    });
  }

  update(job, events) {
    const recorded = job.metrics?.loss_curve;
    const progress = job.progress;
    if (!recorded && progress?.loss != null && progress.step != null) {
      this.#liveLoss.set(progress.step, progress.loss); // the mean loss of the steps since the last report
    }
    const loss = recorded
      ? recorded.map((p) => ({ x: p.step, y: p.loss }))
      : [...this.#liveLoss].sort(([a], [b]) => a - b).map(([step, value]) => ({ x: step, y: value }));
    setSeries(this.lossChart, [loss]);
    this.lossNote.textContent = recorded
      ? ""
      : loss.length
        ? "live: sampled from the job's progress reports"
        : "no loss recorded yet";

    const evaluations = job.metrics?.history ?? events.filter((e) => e.kind === "evaluated").map((e) => e.data);
    this.#showMetricsOf(evaluations);
    setSeries(
      this.validationChart,
      this.#metrics.map((name) => evaluations.filter((e) => e[name] != null).map((e) => ({ x: e.step, y: e[name] }))),
    );
    this.validationNote.textContent = evaluations.length ? "" : "no validation yet (or the job holds none out)";
  }

  // A multi-label job also reports micro-F1: add its series the first time it appears.
  #showMetricsOf(evaluations) {
    for (const name of VALIDATION_METRICS) {
      if (!this.#metrics.includes(name) && evaluations.some((e) => e[name] != null)) {
        const color = PALETTE[this.#metrics.length % PALETTE.length];
        this.#metrics.push(name);
        this.validationChart.data.datasets.push({
          ...this.validationChart.data.datasets[0],
          label: name,
          data: [],
          borderColor: color,
          backgroundColor: color,
        });
      }
    }
  }
}
