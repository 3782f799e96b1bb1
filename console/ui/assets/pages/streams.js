// /ui/streams — the streams, by prefix; /ui/streams/{stream} — one stream's
// events, newest first or from the start.

import {getJSON, nextLink, request} from "../api.js";
import {eventHref, field, fmtNumber, h, link, streamHref, table, timeEl, uiPath} from "../dom.js";

const PAGE = 50;

export async function streamsPage(ctx) {
  const prefix = ctx.query.get("prefix") || "";
  const after = ctx.query.get("after") || "";
  const q = new URLSearchParams({limit: String(PAGE)});
  if (prefix) q.set("prefix", prefix);
  if (after) q.set("after", after);
  const res = await request("/streams?" + q, {signal: ctx.signal});
  const {streams} = await res.json();
  const next = nextLink(res);

  const input = h("input", {id: "stream-prefix", type: "search", name: "prefix", value: prefix, placeholder: "orders/", autocomplete: "off"});
  const form = h("form", {class: "toolbar", role: "search", onsubmit: (ev) => {
    ev.preventDefault();
    const p = input.value;
    ctx.navigate("/ui/streams" + (p ? "?" + new URLSearchParams({prefix: p}) : ""), {replace: true});
  }},
  field("Name starts with", input),
  h("button", {type: "submit"}, "Search"));

  let nextHref = null;
  if (next) {
    const nq = new URL(next, location.origin).searchParams;
    const uq = new URLSearchParams({after: nq.get("after")});
    if (prefix) uq.set("prefix", prefix);
    nextHref = "/ui/streams?" + uq;
  }
  return {
    title: "Streams",
    node: h("section", {"aria-labelledby": "streams-title"},
      h("h1", {id: "streams-title"}, "Streams"),
      form,
      table("Streams", ["Stream", "Events", "Last write", "Newest event"], streams, (s) => [
        link(streamHref(s.name), s.name),
        fmtNumber(s.events),
        timeEl(s.last_write),
        link(eventHref(s.last_number), "#" + s.last_number)], prefix ? `No stream starts with “${prefix}”.` : "No streams yet."),
      h("div", {class: "pager"},
        after ? link("/ui/streams" + (prefix ? "?" + new URLSearchParams({prefix}) : ""), "First page") : null,
        nextHref ? link(nextHref, "Next page") : null)),
  };
}

export async function streamPage(ctx) {
  const name = ctx.args.join("/");
  const order = ctx.query.get("order") === "oldest" ? "oldest" : "newest";
  const info = await getJSON("/streams/" + encodeURIComponent(name), {signal: ctx.signal});
  const total = info.events;
  let from;
  let events;
  const fromParam = Number(ctx.query.get("from"));
  if (order === "newest") {
    // The page ends at `from` (default: the newest event) and is shown
    // newest first.
    const end = Number.isInteger(fromParam) && fromParam >= 1 ? Math.min(fromParam, total) : total;
    from = Math.max(1, end - PAGE + 1);
    events = await getJSON(`/streams/${encodeURIComponent(name)}/events?from=${from}&limit=${end - from + 1}`, {signal: ctx.signal});
    events.reverse();
  } else {
    from = Number.isInteger(fromParam) && fromParam >= 1 ? fromParam : 1;
    events = await getJSON(`/streams/${encodeURIComponent(name)}/events?from=${from}&limit=${PAGE}`, {signal: ctx.signal});
  }
  const here = (o, f) => uiPath("streams", name) + "?" + new URLSearchParams(f ? {order: o, from: String(f)} : {order: o});
  const seqs = events.map((e) => e.fossilsequenceinstream);
  const lo = seqs.length ? Math.min(...seqs) : 0;
  const hi = seqs.length ? Math.max(...seqs) : 0;
  let newer = null;
  let older = null;
  if (order === "newest") {
    if (hi < total) newer = here("newest", Math.min(total, hi + PAGE));
    if (lo > 1) older = here("newest", lo - 1);
  } else {
    if (lo > 1) older = here("oldest", Math.max(1, lo - PAGE));
    if (hi < total) newer = here("oldest", hi + 1);
  }
  const tailHref = "/ui/tail?" + new URLSearchParams({stream: literalTemplate(name), after: String(info.last_number)});
  return {
    title: name,
    node: h("section", {"aria-labelledby": "stream-title"},
      h("p", {class: "crumbs"}, link("/ui/streams", "Streams"), " / "),
      h("h1", {id: "stream-title", class: "mono"}, name),
      h("div", {class: "cards"},
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Events"), h("div", {class: "card-value", id: "stream-events"}, fmtNumber(total))),
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Last write"), h("div", {class: "card-value"}, timeEl(info.last_write))),
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Created"), h("div", {class: "card-value"}, timeEl(info.created_at)))),
      h("div", {class: "nav-links"},
        order === "newest" ? h("span", {"aria-current": "true"}, "Newest first") : link(here("newest"), "Newest first"),
        order === "oldest" ? h("span", {"aria-current": "true"}, "From the start") : link(here("oldest"), "From the start"),
        link(tailHref, "Follow live")),
      h("h2", null, `Events ${fmtNumber(lo)}–${fmtNumber(hi)} of ${fmtNumber(total)}`),
      table(`Events of ${name}`, ["Sequence", "Number", "Type", "ID", "Time"], events, (e) => [
        fmtNumber(e.fossilsequenceinstream),
        link(eventHref(e.fossileventnumber), "#" + e.fossileventnumber),
        e.type,
        h("span", {class: "mono"}, e.id),
        e.time ? timeEl(e.time) : h("span", {class: "muted"}, "—")], "No events."),
      h("nav", {class: "pager", "aria-label": "Pages"},
        order === "newest" ? [newer ? link(newer, "Newer") : null, older ? link(older, "Older") : null]
          : [older ? link(older, "Earlier") : null, newer ? link(newer, "Later") : null])),
  };
}

// literalTemplate is an RFC 6570 template matching exactly the stream
// name: its literal text, with the characters templates reserve
// percent-encoded as Fossil's matcher expects.
export function literalTemplate(name) {
  return name.replace(/[{}%\s"<>\\^`|]/g, (c) => encodeURIComponent(c));
}
