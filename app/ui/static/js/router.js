// Hash routes: "#/jobs/job_123?x=1" -> the jobs/:id page with params {id} and query {x}.
import * as compare from "./pages/compare.js";
import * as experiment from "./pages/experiment.js";
import * as experiments from "./pages/experiments.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as model from "./pages/model.js";
import * as models from "./pages/models.js";

const ROUTES = [
  ["jobs", jobs],
  ["jobs/:id", job],
  ["models", models],
  ["models/:id", model],
  ["compare", compare],
  ["experiments", experiments],
  ["experiments/:id", experiment],
];

export const DEFAULT_ROUTE = "#/jobs";

function matches(pattern, segments) {
  const parts = pattern.split("/");
  if (parts.length !== segments.length) return null;
  const params = {};
  for (const [i, part] of parts.entries()) {
    if (part.startsWith(":")) {
      try {
        params[part.slice(1)] = decodeURIComponent(segments[i]);
      } catch {
        return null; // a malformed address (#/jobs/%E0) is no page, not an error mid-navigation
      }
    } else if (part !== segments[i]) return null;
  }
  return params;
}

// {page, params, query, section} for a hash, or null when no page has that address.
export function resolve(hash) {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const segments = path.split("/").filter(Boolean);
  for (const [pattern, page] of ROUTES) {
    const params = matches(pattern, segments);
    if (params) return { page, params, query: new URLSearchParams(search), section: segments[0] };
  }
  return null;
}
