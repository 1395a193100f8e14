// The dashboard's entry point: the login gate, the navigation, and one page at a time.
import { UNAUTHORIZED_EVENT } from "./api.js";
import { errorBox, h } from "./dom.js";
import { renderLogin } from "./pages/login.js";
import { DEFAULT_ROUTE, resolve } from "./router.js";
import { PageScope } from "./scope.js";
import { session } from "./session.js";

const app = document.getElementById("app");
const nav = document.getElementById("nav");
const logout = document.getElementById("logout");
let current = null; // the shown page's scope: left (its polling and charts ended) on navigation

function leavePage() {
  current?.leave();
  current = null;
}

function showLogin(message) {
  leavePage();
  nav.hidden = logout.hidden = true;
  renderLogin(app, { message, onLogin: showPage });
}

function showPage() {
  if (!session.key()) return showLogin();
  leavePage();
  nav.hidden = logout.hidden = false;
  const route = resolve(location.hash || DEFAULT_ROUTE);
  nav.querySelectorAll("a").forEach((a) => a.classList.toggle("active", a.dataset.section === route?.section));
  const root = h("div", { class: "page" });
  app.replaceChildren(root);
  if (!route) {
    root.append(errorBox(`No page at ${location.hash}.`));
    return;
  }
  const scope = (current = new PageScope());
  route.page.render(root, { params: route.params, query: route.query, scope }).catch((error) => {
    // A refused key has already brought the login form back (UNAUTHORIZED_EVENT).
    if (error.status !== 401 && !scope.left) root.prepend(errorBox(error.message));
  });
}

window.addEventListener(UNAUTHORIZED_EVENT, (event) => {
  session.clear();
  showLogin(event.detail);
});
window.addEventListener("hashchange", showPage);
logout.addEventListener("click", () => {
  session.clear();
  showLogin();
});
showPage();
