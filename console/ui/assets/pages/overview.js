// /ui/ — what the store holds and how fast it grows.

import {ApiError, AuthError, getJSON, getText} from "../api.js";
import {card, chart, eventHref, fmtNumber, fmtRate, h, link, problemBox, streamHref, swap, table} from "../dom.js";

const NEWEST = 15; // newest events shown
const RECENT_SCAN = 200; // events read to find the recently written streams
const RECENT_STREAMS = 10;

// rates turns head samples into events per second between samples.
function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (Date.parse(samples[i].at) - Date.parse(samples[i - 1].at)) / 1000;
    out.push(dt > 0 ? Math.max(0, samples[i].events - samples[i - 1].events) / dt : 0);
  }
  return out;
}

// recentRate is the mean rate over the last `seconds` (or the span the
// samples cover, if shorter).
function recentRate(samples, seconds) {
  if (samples.length < 2) return {rate: NaN, seconds: 0};
  const last = samples[samples.length - 1];
  const end = Date.parse(last.at);
  let first = samples[0];
  for (const sm of samples) {
    if (end - Date.parse(sm.at) <= seconds * 1000) {
      first = sm;
      break;
    }
  }
  const span = (end - Date.parse(first.at)) / 1000;
  return {rate: span > 0 ? (last.events - first.events) / span : NaN, seconds: Math.round(span)};
}

// parseCheckpoint reads a C2SP checkpoint note.
function parseCheckpoint(text) {
  const [body, sigs = ""] = text.split("\n\n");
  const lines = body.split("\n");
  return {origin: lines[0], size: Number(lines[1]), root: lines[2], extensions: lines.slice(3), signatures: sigs.trim().split("\n").filter(Boolean)};
}

async function optional(promise) {
  try {
    return {value: await promise};
  } catch (e) {
    if (e instanceof AuthError) throw e;
    if (e instanceof ApiError) return {error: e};
    throw e;
  }
}

async function load(signal) {
  const [stats, cp] = await Promise.all([optional(getJSON("/stats", {signal})), optional(getText("/checkpoint", {signal}))]);
  const checkpoint = cp.value ? parseCheckpoint(cp.value) : null;
  // The newest event number: the stats' count, else the checkpoint's tree
  // size (every committed event is in the tree).
  const head = stats.value ? stats.value.events : checkpoint ? checkpoint.size : 0;
  const after = Math.max(0, head - RECENT_SCAN);
  const recent = await optional(getJSON(`/events?after=${after}&limit=${RECENT_SCAN}`, {signal}));
  return {stats, checkpoint, checkpointError: cp.error, head, recent};
}

function view(d) {
  const s = d.stats.value;
  const rs = s ? rates(s.samples) : [];
  const recent = s ? recentRate(s.samples, 60) : {rate: NaN, seconds: 0};
  const minutes = s && s.samples.length > 1 ? Math.max(1, Math.round((Date.parse(s.samples[s.samples.length - 1].at) - Date.parse(s.samples[0].at)) / 60000)) : 0;
  const events = d.recent.value ? d.recent.value.slice().reverse() : [];
  const seen = new Set();
  const streams = [];
  for (const e of events) {
    if (!seen.has(e.fossilstream)) {
      seen.add(e.fossilstream);
      streams.push(e);
      if (streams.length === RECENT_STREAMS) break;
    }
  }
  return h("section", {"aria-labelledby": "overview-title"},
    h("h1", {id: "overview-title"}, "Overview"),
    h("div", {class: "cards"},
      card("Events", fmtNumber(s ? s.events : d.head), "stat-events"),
      card("Streams", s ? fmtNumber(s.streams) : "—", "stat-streams", s ? null : "needs the metrics grant"),
      card("Ingest rate", s ? fmtRate(recent.rate) + " /s" : "—", "stat-rate", s ? `over the last ${recent.seconds} s` : null),
      card("Checkpoint", d.checkpoint ? fmtNumber(d.checkpoint.size) : "—", "stat-checkpoint", d.checkpoint ? "signed tree size" : null)),
    h("h2", null, "Ingest rate" + (minutes ? `, last ${minutes} min` : "")),
    s ? chart(rs, {label: `Events per second over the last ${minutes || 1} minutes; ${fmtRate(recent.rate)} per second over the last ${recent.seconds} s`, unit: "/s"})
      : problemBox(d.stats.error),
    h("div", {class: "grid2"},
      h("div", null,
        h("h2", null, "Newest events"),
        d.recent.error ? problemBox(d.recent.error)
          : table("Newest events", ["Number", "Stream", "Type", "ID"], events.slice(0, NEWEST), (e) => [
            link(eventHref(e.fossileventnumber), fmtNumber(e.fossileventnumber)),
            link(streamHref(e.fossilstream), e.fossilstream),
            e.type, h("span", {class: "mono"}, e.id)], "No events yet.")),
      h("div", null,
        h("h2", null, "Recently written streams"),
        d.recent.error ? null
          : table("Recently written streams", ["Stream", "Events", "Last event"], streams, (e) => [
            link(streamHref(e.fossilstream), e.fossilstream),
            fmtNumber(e.fossilsequenceinstream),
            link(eventHref(e.fossileventnumber), "#" + e.fossileventnumber)], "No streams yet."))),
    h("h2", null, "Checkpoint"),
    d.checkpoint
      ? h("div", {class: "panel"}, h("dl", {class: "attrs"},
        h("dt", null, "Origin"), h("dd", null, d.checkpoint.origin),
        h("dt", null, "Tree size"), h("dd", null, fmtNumber(d.checkpoint.size)),
        h("dt", null, "Root hash"), h("dd", {class: "mono"}, d.checkpoint.root),
        d.checkpoint.extensions.length ? [h("dt", null, "Extensions"), h("dd", {class: "mono"}, d.checkpoint.extensions.join(" "))] : null,
        h("dt", null, "Signatures"), h("dd", {class: "mono"}, d.checkpoint.signatures.join("\n"))))
      : d.checkpointError ? problemBox(d.checkpointError) : h("p", {class: "muted"}, "No checkpoint."));
}

export async function overviewPage(ctx) {
  const holder = h("div", null, view(await load(ctx.signal)));
  ctx.every(5000, async () => {
    const d = await load(ctx.signal);
    swap(holder, view(d));
  });
  return {title: "Overview", node: holder};
}
