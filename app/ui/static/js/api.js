// Every data call of the dashboard: the /v1 API with `Authorization: Bearer <key>`.
import { session } from "./session.js";

// Fired when the API refuses the stored key: main.js ends the session and shows the login form.
export const UNAUTHORIZED_EVENT = "thaw:unauthorized";

export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(detail));
    this.status = status;
    this.detail = detail;
  }
}

// The API's `detail` is a sentence for its own errors and a list of {loc, msg, type} for a body
// that fails validation: shown as the API wrote it either way.
function describe(detail) {
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

// `key` defaults to the session's; the login form passes the key it is trying instead, and a 401
// for that one is its own answer, not the end of a session.
export async function request(method, path, { body, key = session.key() } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, `the API is unreachable (${error.message})`);
  }
  const payload = await readJson(response);
  if (response.ok) return payload;
  const error = new ApiError(response.status, payload?.detail ?? `${response.status} ${response.statusText}`);
  if (response.status === 401 && key === session.key()) {
    window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: error.message }));
  }
  throw error;
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, body, options) => request("POST", path, { ...options, body }),
};
