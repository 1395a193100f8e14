// A job's events, oldest first, each with its data when it has any.
import { h, table } from "../dom.js";
import { dateTime } from "../format.js";

export function eventLog(events) {
  return table(
    [
      { title: "time", cell: (e) => dateTime(e.at), class: "nowrap" },
      { title: "kind", cell: (e) => h("span", { class: `event-kind kind-${e.kind}` }, e.kind) },
      {
        title: "message",
        cell: (e) => [
          e.message,
          e.data && Object.keys(e.data).length
            ? h("details", {}, h("summary", {}, "data"), h("pre", {}, JSON.stringify(e.data, null, 2)))
            : null,
        ],
      },
    ],
    events,
    { className: "data event-log", empty: "No events yet." },
  );
}
