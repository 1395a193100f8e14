// "← newer · 51–100 of 230 · older →" under a list; null when one page holds everything.
import { h, link } from "../dom.js";

export function pager(route, { total, limit, offset }) {
  if (total <= limit) return null;
  const to = (start) => `${route}?offset=${start}`;
  return h(
    "div",
    { class: "pager" },
    offset > 0 ? link(to(Math.max(0, offset - limit)), "← newer") : null,
    h("span", { class: "muted" }, `${offset + 1}–${Math.min(total, offset + limit)} of ${total}`),
    offset + limit < total ? link(to(offset + limit), "older →") : null,
  );
}
