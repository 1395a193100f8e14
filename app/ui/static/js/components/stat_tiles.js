// A row of headline numbers: [{label, value, hint?}].
import { h } from "../dom.js";

export function statTiles(tiles) {
  return h(
    "div",
    { class: "tiles" },
    tiles.map(({ label, value, hint }) =>
      h(
        "div",
        { class: "tile" },
        h("div", { class: "tile-value" }, value),
        h("div", { class: "tile-label" }, label),
        hint && h("small", { class: "muted" }, hint),
      ),
    ),
  );
}
