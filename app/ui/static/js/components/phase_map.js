// The phases of a job's schedule as a map: one column per phase (from which step), one row per
// layer group from the top (new layers) down to the embeddings; a cell holds the group's learning
// rate when the group trains in that phase, and is grey while it is frozen. This is where gradual
// unfreezing, chain-thaw and discriminative rates become visible.
import { h } from "../dom.js";
import { integer, learningRate } from "../format.js";

// Bottom-up position of a group: embeddings, layer_1 … layer_n, new; anything else after them.
function depth(group) {
  if (group === "embeddings") return 0;
  const layer = /^layer_(\d+)$/.exec(group);
  if (layer) return Number(layer[1]);
  return group === "new" ? 10_000 : 20_000;
}

export function phaseMap(phases, totalSteps) {
  if (!phases?.length) return h("p", { class: "muted empty" }, "No phases recorded yet.");
  const groups = [...new Set(phases.flatMap((p) => [...p.trainable_groups, ...Object.keys(p.learning_rates ?? {})]))];
  groups.sort((a, b) => depth(b) - depth(a) || a.localeCompare(b));
  // A phase's `step` counts the steps done before it: it trains steps step+1 … the next phase's step.
  const lastStep = (i) => (i + 1 < phases.length ? phases[i + 1].step : totalSteps);
  const heading = (phase, i) => {
    const first = phase.step + 1;
    const last = lastStep(i);
    const steps = last == null ? `from step ${integer(first)}` : `steps ${integer(first)}–${integer(last)}`;
    const name = typeof phase.phase === "number" || phase.phase == null ? `phase ${phase.phase ?? i + 1}` : phase.phase;
    return h(
      "th",
      { scope: "col" },
      h("div", {}, name),
      h("small", { class: "muted" }, `${steps} · epoch ${phase.epoch}`),
    );
  };
  const cell = (phase, group) => {
    const trains = phase.trainable_groups.includes(group);
    const rate = phase.learning_rates?.[group];
    return h("td", { class: trains ? "phase-on" : "phase-off" }, trains ? learningRate(rate) : "frozen");
  };
  return h(
    "table",
    { class: "phase-map" },
    h("caption", {}, "learning rate of each trainable group at the start of each phase"),
    h("thead", {}, h("tr", {}, h("th", {}, "group"), phases.map(heading))),
    h(
      "tbody",
      {},
      groups.map((group) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, group),
          phases.map((phase) => cell(phase, group)),
        ),
      ),
    ),
  );
}
