// /ui/consumers — named consumers: offset, lag and its history, connected
// or not, last commit.

import {getJSON} from "../api.js";
import {chart, fmtNumber, h, link, swap, table, timeEl} from "../dom.js";

const REFRESH = 2000;
const KEEP = 300; // samples per consumer (10 minutes at one per 2 s)

// history keeps each consumer's lag since the console was opened in this
// tab (the server keeps offsets, not their past), across page changes.
const history = new Map();

function record(consumers) {
  for (const c of consumers) {
    const hs = history.get(c.name) || [];
    hs.push(c.lag);
    if (hs.length > KEEP) hs.shift();
    history.set(c.name, hs);
  }
}

function badge(connected) {
  return connected ? h("span", {class: "badge ok"}, "connected") : h("span", {class: "badge off"}, "not connected");
}

function view(consumers) {
  return table("Consumers", ["Name", "Offset", "Lag", "Lag over time", "Connection", "Last commit"], consumers, (c) => {
    const hs = history.get(c.name) || [c.lag];
    const spark = chart(hs, {label: `Lag of ${c.name} over the last ${Math.round((hs.length * REFRESH) / 1000)} s; now ${c.lag}`, width: 160, height: 32, caption: false, className: "spark"});
    return [
      h("span", {class: "mono"}, c.name),
      c.offset ? link(`/ui/events/${c.offset}`, fmtNumber(c.offset)) : "0",
      h("span", {class: c.lag > 0 ? "lag" : null}, fmtNumber(c.lag)),
      spark,
      badge(c.connected),
      timeEl(c.committed_at),
    ];
  }, "No consumers yet: a consumer appears once it connects to /consumer/{name}/sse or commits an offset.");
}

export async function consumersPage(ctx) {
  const load = async () => {
    const {consumers} = await getJSON("/consumers", {signal: ctx.signal});
    record(consumers);
    return consumers;
  };
  const holder = h("div", {id: "consumers"}, view(await load()));
  ctx.every(REFRESH, async () => swap(holder, view(await load())));
  return {
    title: "Consumers",
    node: h("section", {"aria-labelledby": "consumers-title"},
      h("h1", {id: "consumers-title"}, "Consumers"),
      h("p", {class: "muted"}, `Refreshed every ${REFRESH / 1000} s. Lag is the newest event number minus the committed offset; its history covers the time this tab has had the console open.`),
      holder),
  };
}
