// The console's entry point: the router (history API; every page is a real
// URL under /ui/ that the server answers with this application), the token
// form, and the page lifecycle.

import {AuthError, getToken, setToken} from "./api.js";
import {h, problemBox} from "./dom.js";
import {overviewPage} from "./pages/overview.js";
import {streamPage, streamsPage} from "./pages/streams.js";
import {eventPage} from "./pages/event.js";
import {tailPage} from "./pages/tail.js";
import {consumersPage} from "./pages/consumers.js";
import {subscriptionPage, subscriptionsPage} from "./pages/subscriptions.js";
import {schemaPage, schemasPage} from "./pages/schemas.js";

// routes map the first path segment below /ui/ to a page and its section
// (the highlighted navigation entry). A page is
// async (ctx) => {title, node}; ctx holds the decoded path segments
// (args), the query (URLSearchParams), an AbortSignal that fires when the
// user navigates away, and every(ms, fn) for refreshes that stop then.
const routes = {
  "": {section: "overview", page: overviewPage},
  streams: {section: "streams", page: (ctx) => (ctx.args.length ? streamPage(ctx) : streamsPage(ctx))},
  events: {section: "streams", page: eventPage},
  tail: {section: "tail", page: tailPage},
  consumers: {section: "consumers", page: consumersPage},
  subscriptions: {section: "subscriptions", page: (ctx) => (ctx.args.length ? subscriptionPage(ctx) : subscriptionsPage(ctx))},
  schemas: {section: "schemas", page: (ctx) => (ctx.args.length ? schemaPage(ctx) : schemasPage(ctx))},
};

let current = null; // AbortController of the page on screen

function parseLocation() {
  const raw = location.pathname.replace(/^\/ui\/?/, "");
  const segments = raw === "" ? [] : raw.split("/").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  if (segments.length && segments[segments.length - 1] === "") segments.pop();
  return {head: segments[0] || "", args: segments.slice(1), query: new URLSearchParams(location.search)};
}

function setSection(section) {
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function updateTokenButton() {
  const btn = document.getElementById("token-button");
  btn.hidden = !getToken();
}

// render shows the page of the current location.
export async function render() {
  if (current) current.abort();
  const ctrl = new AbortController();
  current = ctrl;
  const main = document.getElementById("main");
  const {head, args, query} = parseLocation();
  const route = routes[head];
  updateTokenButton();
  if (!route) {
    setSection("");
    show(main, "Not found", h("section", null, h("h1", null, "Not found"), h("p", null, "No console page at ", h("code", null, location.pathname), ".")));
    return;
  }
  setSection(route.section);
  main.setAttribute("aria-busy", "true");
  const ctx = {
    args, query, signal: ctrl.signal,
    navigate,
    every(ms, fn) {
      const t = setInterval(() => {
        if (!ctrl.signal.aborted) fn().catch((e) => onPageError(e, ctrl));
      }, ms);
      ctrl.signal.addEventListener("abort", () => clearInterval(t));
    },
    fail: (e) => onPageError(e, ctrl),
  };
  try {
    const {title, node} = await route.page(ctx);
    if (ctrl.signal.aborted) return;
    show(main, title, node);
  } catch (e) {
    if (ctrl.signal.aborted) return;
    onPageError(e, ctrl);
  } finally {
    main.removeAttribute("aria-busy");
  }
}

function show(main, title, node) {
  document.title = title ? `${title} · Fossil` : "Fossil";
  main.replaceChildren(node);
}

// onPageError shows what went wrong: the token form for a 401, the
// problem otherwise.
function onPageError(e, ctrl) {
  if (ctrl.signal.aborted || (e && e.name === "AbortError")) return;
  ctrl.abort();
  const main = document.getElementById("main");
  if (e instanceof AuthError) {
    show(main, "Token needed", tokenForm(e));
    const input = document.getElementById("token-input");
    if (input) input.focus();
    return;
  }
  show(main, "Error", h("section", null, h("h1", null, "This page could not be shown"), problemBox(e)));
}

// tokenForm asks for a bearer token; the server answered 401.
function tokenForm(err) {
  const had = !!getToken();
  const input = h("textarea", {id: "token-input", name: "token", rows: 4, required: true, spellcheck: "false", autocomplete: "off", "aria-describedby": "token-help"});
  const form = h("form", {class: "token-form", onsubmit: (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    render();
  }},
  h("h1", null, "A token is needed"),
  h("p", {id: "token-help"}, had
    ? "The server refused the token of this tab: " + (err.problem.detail || "it is not valid") + ". Paste another JWT."
    : "This server has authentication on. Paste a JWT; it is kept in this tab only (session storage) and sent as a bearer header."),
  h("label", {for: "token-input"}, "Bearer token"),
  input,
  h("div", {class: "actions"}, h("button", {type: "submit"}, "Use this token")));
  return form;
}

// navigate moves to an in-app URL without reloading.
export function navigate(href, {replace = false} = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  render();
}

document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui/") || url.pathname.startsWith("/ui/assets/")) return;
  ev.preventDefault();
  navigate(url.pathname + url.search + url.hash);
  document.getElementById("main").focus({preventScroll: true});
});

window.addEventListener("popstate", render);

document.getElementById("token-button").addEventListener("click", () => {
  setToken("");
  render();
});

render();
