// /ui/tail?stream=<template>&after=<n> — live events over SSE, with pause,
// a filter and a counter.

import {ApiError, AuthError, getText, readSSE} from "../api.js";
import {eventHref, field, fmtNumber, h, link, problemBox, streamHref} from "../dom.js";

const KEEP = 500; // entries kept on screen
const BACKLOG = 20; // events shown from before the page opened, by default

export async function tailPage(ctx) {
  const templates = ctx.query.getAll("stream").flatMap((s) => s.split(/\s+/)).filter(Boolean);
  if (!templates.length) templates.push("{+all}");
  let after = Number(ctx.query.get("after"));
  if (!ctx.query.has("after") || !Number.isInteger(after) || after < 0) {
    try {
      const size = Number((await getText("/checkpoint", {signal: ctx.signal})).split("\n")[1]);
      after = Math.max(0, size - BACKLOG);
    } catch (e) {
      if (e instanceof AuthError) throw e;
      after = 0;
    }
  }

  let received = 0;
  let last = after;
  let paused = false;
  let conn = null; // AbortController of the open stream
  let filter = "";

  const streamsInput = h("input", {id: "tail-streams", name: "stream", value: templates.join(" "), size: 28, autocomplete: "off"});
  const afterInput = h("input", {id: "tail-after", name: "after", type: "number", min: 0, value: String(after), size: 8});
  const filterInput = h("input", {id: "tail-filter", type: "search", placeholder: "type, stream, id or data", autocomplete: "off", oninput: () => {
    filter = filterInput.value.toLowerCase();
    applyFilter();
  }});
  const pauseBtn = h("button", {type: "button", id: "tail-pause", "aria-pressed": "false", onclick: () => {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      if (conn) conn.abort();
    } else {
      connect();
    }
    status();
  }}, "Pause");
  const statusEl = h("p", {class: "tail-status", id: "tail-status", role: "status"});
  const errorEl = h("div");
  const list = h("ol", {class: "tail-list", id: "tail-list", reversed: true, "aria-label": "Events, newest first"});

  function shown() {
    let n = 0;
    for (const li of list.children) if (!li.hidden) n++;
    return n;
  }

  function status(state) {
    const s = state || (paused ? "Paused" : conn ? "Live" : "Connecting…");
    statusEl.textContent = `${s} · ${fmtNumber(received)} received · ${fmtNumber(shown())} shown · last event ${last ? "#" + last : "none"}`;
  }

  function matches(li) {
    return !filter || li.dataset.text.includes(filter);
  }

  function applyFilter() {
    for (const li of list.children) li.hidden = !matches(li);
    status();
  }

  function add(id, data) {
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    received++;
    last = Number(id) || last;
    const li = h("li", null,
      link(eventHref(ev.fossileventnumber), "#" + ev.fossileventnumber),
      link(streamHref(ev.fossilstream), ev.fossilstream),
      h("span", null, h("strong", null, ev.type), " ", h("span", {class: "mono muted"}, ev.id)));
    li.dataset.text = [ev.type, ev.fossilstream, ev.id, ev.source, JSON.stringify(ev.data ?? ev.data_base64 ?? "")].join(" ").toLowerCase();
    li.hidden = !matches(li);
    list.prepend(li);
    while (list.children.length > KEEP) list.lastElementChild.remove();
    status();
  }

  async function connect() {
    const q = new URLSearchParams();
    for (const t of templates) q.append("stream", t);
    while (!paused && !ctx.signal.aborted) {
      const ctrl = new AbortController();
      const stop = () => ctrl.abort();
      ctx.signal.addEventListener("abort", stop);
      conn = ctrl;
      status("Connecting…");
      try {
        await readSSE("/sse?" + q, {after: last, signal: ctrl.signal, onEvent: add, onOpen: () => {
          errorEl.replaceChildren();
          status("Live");
        }});
      } catch (e) {
        if (ctrl.signal.aborted) return;
        if (e instanceof AuthError) {
          ctx.fail(e);
          return;
        }
        if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          errorEl.replaceChildren(problemBox(e));
          conn = null;
          status("Stopped");
          return;
        }
        errorEl.replaceChildren(problemBox(e));
      } finally {
        ctx.signal.removeEventListener("abort", stop);
        if (conn === ctrl) conn = null;
      }
      status("Reconnecting…");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  const form = h("form", {class: "toolbar", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const t of streamsInput.value.split(/\s+/).filter(Boolean)) q.append("stream", t);
    q.set("after", afterInput.value || "0");
    ctx.navigate("/ui/tail?" + q, {replace: true});
  }},
  field("Stream templates", streamsInput, "RFC 6570, space-separated, e.g. orders/{id}"),
  field("After event", afterInput),
  h("button", {type: "submit"}, "Follow"));

  status();
  queueMicrotask(connect);
  return {
    title: "Live tail",
    node: h("section", {"aria-labelledby": "tail-title"},
      h("h1", {id: "tail-title"}, "Live tail"),
      form,
      h("div", {class: "toolbar"}, field("Filter", filterInput), pauseBtn),
      statusEl,
      errorEl,
      list),
  };
}
