// /ui/events/{number} — one event: attributes, extensions, data, its
// inclusion proof, and links to its stream and neighbours.

import {ApiError, AuthError, getJSON, getText} from "../api.js";
import {base64ToBytes, eventHref, fmtNumber, h, hexDump, link, prettyJSON, problemBox, streamHref} from "../dom.js";

const ATTRIBUTES = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"];
const FOSSIL = ["fossileventnumber", "fossilstream", "fossilsequenceinstream", "fossilexpectack"];

function dl(pairs) {
  return h("dl", {class: "attrs"}, pairs.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

function isJSONType(ct) {
  if (!ct) return true; // no datacontenttype: JSON by the CloudEvents JSON format
  const base = ct.split(";")[0].trim().toLowerCase();
  return base === "application/json" || base === "text/json" || base.endsWith("+json");
}

// dataView shows the data: JSON pretty-printed, text as text, binary as a
// hex dump with a base64 view beside it.
function dataView(ev) {
  if ("data_base64" in ev) {
    let bytes;
    try {
      bytes = base64ToBytes(ev.data_base64);
    } catch {
      return h("pre", {id: "event-data"}, ev.data_base64);
    }
    return h("div", null,
      h("p", {class: "muted"}, `${fmtNumber(bytes.length)} bytes of binary data`),
      h("h3", null, "Hex"),
      h("pre", {id: "event-data", class: "hex"}, hexDump(bytes)),
      h("details", null, h("summary", null, "Base64"), h("pre", null, ev.data_base64)));
  }
  if (!("data" in ev)) return h("p", {class: "muted", id: "event-data"}, "No data.");
  if (typeof ev.data === "string" && !isJSONType(ev.datacontenttype)) {
    return h("pre", {id: "event-data"}, ev.data);
  }
  return h("pre", {id: "event-data"}, prettyJSON(ev.data));
}

async function optional(p) {
  try {
    return {value: await p};
  } catch (e) {
    if (e instanceof AuthError) throw e;
    if (e instanceof ApiError) return {error: e};
    throw e;
  }
}

export async function eventPage(ctx) {
  const n = Number(ctx.args[0]);
  if (!Number.isInteger(n) || n < 1) {
    return {title: "Event", node: h("section", null, h("h1", null, "Event"), problemBox(new Error(`“${ctx.args[0] || ""}” is not an event number.`)))};
  }
  const ev = await getJSON("/events/" + n, {signal: ctx.signal});
  const stream = ev.fossilstream;
  const seq = ev.fossilsequenceinstream;
  const [proof, around, checkpoint] = await Promise.all([
    optional(getJSON(`/events/${n}/proof`, {signal: ctx.signal})),
    optional(getJSON(`/streams/${encodeURIComponent(stream)}/events?from=${Math.max(1, seq - 1)}&limit=3`, {signal: ctx.signal})),
    optional(getText("/checkpoint", {signal: ctx.signal})),
  ]);
  // The newest event number (every committed event is in the tree): no
  // "next" link past it.
  const head = checkpoint.value ? Number(checkpoint.value.split("\n")[1]) : Infinity;
  const inStream = around.value || [];
  const prevInStream = inStream.find((e) => e.fossilsequenceinstream === seq - 1);
  const nextInStream = inStream.find((e) => e.fossilsequenceinstream === seq + 1);

  const attrs = ATTRIBUTES.filter((k) => k in ev).map((k) => [k, k === "id" || k === "source" ? h("span", {class: "mono"}, ev[k]) : String(ev[k])]);
  const fossil = [
    ["fossileventnumber", fmtNumber(ev.fossileventnumber)],
    ["fossilstream", link(streamHref(stream), stream)],
    ["fossilsequenceinstream", fmtNumber(seq)],
  ];
  if (ev.fossilexpectack) fossil.push(["fossilexpectack", ev.fossilexpectack]);
  const skip = new Set([...ATTRIBUTES, ...FOSSIL, "data", "data_base64"]);
  const extensions = Object.keys(ev).filter((k) => !skip.has(k)).sort().map((k) => [k, String(ev[k])]);

  let proofView;
  if (proof.value) {
    const p = proof.value;
    proofView = h("div", {class: "panel", id: "event-proof"},
      dl([["Leaf index", fmtNumber(p.leaf_index)], ["Tree size", fmtNumber(p.tree_size)], ["Leaf hash", h("span", {class: "mono"}, p.leaf_hash)]]),
      h("p", null, `${p.proof.length} hashes, from the leaf up to the root of the tree of size ${fmtNumber(p.tree_size)}:`),
      h("pre", null, p.proof.join("\n") || "(none: the tree holds only this leaf)"),
      h("p", {class: "muted"}, "Verify it against a signed checkpoint with golang.org/x/mod/sumdb/tlog CheckRecord (docs/PROOFS.md)."));
  } else {
    proofView = problemBox(proof.error);
  }

  return {
    title: `Event ${n}`,
    node: h("section", {"aria-labelledby": "event-title"},
      h("p", {class: "crumbs"}, link("/ui/streams", "Streams"), " / ", link(streamHref(stream), stream), " / "),
      h("h1", {id: "event-title"}, `Event ${fmtNumber(n)}`),
      h("nav", {class: "nav-links", "aria-label": "Neighbours"},
        n > 1 ? link(eventHref(n - 1), "← Previous in the log") : null,
        n < head ? link(eventHref(n + 1), "Next in the log →") : h("span", {class: "muted"}, "the newest event"),
        prevInStream ? link(eventHref(prevInStream.fossileventnumber), `← Previous in ${stream}`) : null,
        nextInStream ? link(eventHref(nextInStream.fossileventnumber), `Next in ${stream} →`) : null,
        link(streamHref(stream), "The stream")),
      h("div", {class: "grid2"},
        h("div", null, h("h2", null, "Attributes"), h("div", {class: "panel", id: "event-attributes"}, dl(attrs))),
        h("div", null,
          h("h2", null, "Fossil"), h("div", {class: "panel"}, dl(fossil)),
          h("h2", null, "Extensions"), extensions.length ? h("div", {class: "panel", id: "event-extensions"}, dl(extensions)) : h("p", {class: "muted"}, "None."))),
      h("h2", null, "Data"),
      dataView(ev),
      h("h2", null, "Inclusion proof"),
      proofView),
  };
}
