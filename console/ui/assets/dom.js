// Small DOM and formatting helpers shared by the pages. No dependency.

// h builds an element: h("a", {href: "/ui/"}, "text", child, ...).
// Attributes whose value is null, undefined or false are left out; "on*"
// attributes take functions; children may be strings, nodes, arrays or null.
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "class") {
      el.setAttribute("class", v);
    } else if (k === "value" && !svg) {
      el.value = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// swap replaces the content of holder with node (a periodic refresh),
// moving the keyboard focus to the same link or control in the new content
// when it was inside holder, so that a refresh never takes it away.
export function swap(holder, node) {
  const active = document.activeElement;
  let selector = null;
  if (active && active !== holder && holder.contains(active)) {
    if (active.id) selector = "#" + CSS.escape(active.id);
    else if (active.getAttribute("href")) selector = `${active.tagName.toLowerCase()}[href="${CSS.escape(active.getAttribute("href"))}"]`;
    else if (active.getAttribute("aria-label")) selector = `[aria-label="${CSS.escape(active.getAttribute("aria-label"))}"]`;
  }
  holder.replaceChildren(node);
  const again = selector && holder.querySelector(selector);
  if (again) again.focus({preventScroll: true});
}

// link is an in-app link (the router intercepts clicks on it).
export function link(href, ...children) {
  return h("a", {href}, ...children);
}

// uiPath builds a console path from segments, each path-escaped, so that
// a stream name holding '/' stays one segment.
export function uiPath(...segments) {
  return "/ui/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
}

export function streamHref(name) {
  return uiPath("streams", name);
}

export function eventHref(number) {
  return uiPath("events", number);
}

const numberFormat = new Intl.NumberFormat("en");

export function fmtNumber(n) {
  return n === null || n === undefined ? "—" : numberFormat.format(n);
}

// fmtRate formats events per second.
export function fmtRate(r) {
  if (!Number.isFinite(r)) return "—";
  if (r >= 100) return numberFormat.format(Math.round(r));
  return r.toFixed(r >= 10 ? 1 : 2);
}

// ago says how long ago an ISO time was, e.g. "3 s ago".
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  let s = Math.round((now - t) / 1000);
  if (s < 0) s = 0;
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// timeEl shows a time as "… ago", the exact time in its tooltip.
export function timeEl(iso) {
  if (!iso) return h("span", {class: "muted"}, "never");
  return h("time", {datetime: iso, title: iso}, ago(iso));
}

// table builds a table with a caption (for screen readers), a header row
// and one row per item; cells returns the cells of an item.
export function table(caption, headers, items, cells, empty = "Nothing yet.") {
  if (!items.length) return h("p", {class: "empty"}, empty);
  return h("div", {class: "table-wrap"},
    h("table", null,
      h("caption", {class: "sr-only"}, caption),
      h("thead", null, h("tr", null, headers.map((t) => h("th", {scope: "col"}, t)))),
      h("tbody", null, items.map((it) => h("tr", null, cells(it).map((c) => h("td", null, c)))))));
}

// card is one figure of the overview.
export function card(label, value, id, note) {
  return h("div", {class: "card"},
    h("div", {class: "card-label", id: id ? id + "-label" : null}, label),
    h("div", {class: "card-value", id, "aria-labelledby": id ? id + "-label " + id : null}, value),
    note ? h("div", {class: "card-note"}, note) : null);
}

// problemBox shows an API error (a problem document) as an alert.
export function problemBox(err) {
  const p = err && err.problem;
  const title = p ? `${p.status} ${p.title || ""}`.trim() : "Error";
  const detail = p ? p.detail : String(err && err.message || err);
  const items = p && Array.isArray(p.errors) ? p.errors : [];
  return h("div", {class: "problem", role: "alert"},
    h("strong", null, title),
    detail ? h("p", null, detail) : null,
    items.length ? h("ul", null, items.map((e) => h("li", null, e.location ? h("code", null, e.location) : null, e.location ? " " : null, e.message || ""))) : null);
}

// chart draws values (numbers) as an SVG area chart; label describes it
// for assistive technology. With a caption, the highest and the last value
// are written under it (as HTML, which the stretched SVG would distort).
export function chart(values, {label, width = 600, height = 120, unit = "", caption = true, className = "chart"} = {}) {
  if (values.length === 1) values = [values[0], values[0]]; // a flat line
  const max = Math.max(1, ...values);
  const n = values.length;
  const x = (i) => (n <= 1 ? width : (i / (n - 1)) * width);
  const y = (v) => height - 2 - (v / max) * (height - 8);
  let line = "";
  values.forEach((v, i) => { line += (i ? " L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1); });
  const area = n ? line + ` L${x(n - 1).toFixed(1)} ${height} L${x(0).toFixed(1)} ${height} Z` : "";
  const last = n ? values[n - 1] : 0;
  const svg = h("svg:svg", {class: className, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": label},
    h("svg:title", null, label),
    h("svg:line", {x1: 0, x2: width, y1: y(max), y2: y(max), class: "chart-grid"}),
    n ? h("svg:path", {d: area, class: "chart-area"}) : null,
    n ? h("svg:path", {d: line, class: "chart-line"}) : null);
  if (!caption) return svg;
  return h("figure", {class: "chart-box"}, svg,
    h("figcaption", {class: "chart-caption", "aria-hidden": "true"},
      h("span", null, `peak ${fmtRate(max)}${unit}`),
      h("span", null, `now ${fmtRate(last)}${unit}`)));
}

// field is a labelled form control.
export function field(labelText, control, hint) {
  const id = control.id || (control.id = "f-" + Math.random().toString(36).slice(2));
  let hintEl = null;
  if (hint) {
    hintEl = h("div", {class: "hint", id: id + "-hint"}, hint);
    control.setAttribute("aria-describedby", id + "-hint");
  }
  return h("div", {class: "field"}, h("label", {for: id}, labelText), control, hintEl);
}

// prettyJSON indents a JSON value.
export function prettyJSON(v) {
  return JSON.stringify(v, null, 2);
}

// hexDump shows bytes as offset, hex and ASCII columns.
export function hexDump(bytes, limit = 4096) {
  const lines = [];
  const n = Math.min(bytes.length, limit);
  for (let off = 0; off < n; off += 16) {
    const row = bytes.slice(off, Math.min(off + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(off.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + ascii);
  }
  if (bytes.length > n) lines.push(`… ${bytes.length - n} more bytes`);
  return lines.join("\n");
}

export function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
