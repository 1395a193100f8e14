// The login form: nothing else shows until the API accepts a key.
import { api } from "../api.js";
import { errorBox, h } from "../dom.js";
import { session } from "../session.js";

export function renderLogin(root, { message, onLogin }) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    placeholder: "thaw_…",
  });
  const status = h("div", { class: "login-status" }, message ? errorBox(message) : null);
  const button = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "card login", id: "login-form", onSubmit: (event) => submit(event) },
    h("h1", {}, "Log in"),
    h(
      "p",
      { class: "muted" },
      "Use an API key of your tenant (",
      h("code", {}, "thaw keys create --tenant NAME"),
      ").",
    ),
    h("label", { for: "api-key" }, "API key"),
    input,
    button,
    status,
  );

  async function submit(event) {
    event.preventDefault();
    const key = input.value.trim();
    button.disabled = true;
    status.replaceChildren();
    try {
      // Any keyed route will do: the cheapest answers whether the API takes this key.
      await api.get("/v1/jobs?limit=1", { key });
      session.save(key);
      onLogin();
    } catch (error) {
      status.replaceChildren(errorBox(error.message));
    } finally {
      button.disabled = false;
    }
  }

  root.replaceChildren(form);
  input.focus();
}
