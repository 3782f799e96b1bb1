// /ui/consumers — named consumers: offset, lag and its history, connected
// or not, last commit.

import {AuthError, getJSON} from "../api.js";
import {chart, fmtNumber, h, link, swap, table, timeEl} from "../dom.js";

const REFRESH = 2000;

// lagHistory returns each consumer's lag over the last minutes as the
// server sampled it (GET /stats/consumers, every few seconds), or an
// empty map when it cannot be read.
async function lagHistory(signal) {
  try {
    const {consumers} = await getJSON("/stats/consumers", {signal});
    return new Map(consumers.map((c) => [c.name, c.samples]));
  } catch (e) {
    if (e instanceof AuthError) throw e;
    return new Map();
  }
}

function badge(connected) {
  return connected ? h("span", {class: "badge ok"}, "connected") : h("span", {class: "badge off"}, "not connected");
}

function view(consumers, history) {
  return table("Consumers", ["Name", "Offset", "Lag", "Lag over time", "Connection", "Last commit"], consumers, (c) => {
    const samples = history.get(c.name) || [];
    const lags = samples.map((s) => s.lag).concat([c.lag]);
    const seconds = samples.length ? Math.round((Date.now() - Date.parse(samples[0].at)) / 1000) : 0;
    const spark = chart(lags, {label: `Lag of ${c.name} over the last ${seconds} s: from ${lags[0]} to ${c.lag}`, width: 160, height: 32, caption: false, className: "spark"});
    return [
      h("span", {class: "mono"}, c.name),
      c.offset ? link(`/ui/events/${c.offset}`, fmtNumber(c.offset)) : "0",
      fmtNumber(c.lag),
      spark,
      badge(c.connected),
      timeEl(c.committed_at),
    ];
  }, "No consumers yet: a consumer appears once it connects to /consumer/{name}/sse or commits an offset.");
}

export async function consumersPage(ctx) {
  const load = async () => {
    const [{consumers}, history] = await Promise.all([getJSON("/consumers", {signal: ctx.signal}), lagHistory(ctx.signal)]);
    return view(consumers, history);
  };
  const holder = h("div", {id: "consumers"}, await load());
  ctx.every(REFRESH, async () => swap(holder, await load()));
  return {
    title: "Consumers",
    node: h("section", {"aria-labelledby": "consumers-title"},
      h("h1", {id: "consumers-title"}, "Consumers"),
      h("p", {class: "muted"}, `Refreshed every ${REFRESH / 1000} s. Lag is the newest event number minus the committed offset; its history covers the last 10 minutes (sampled by the server every 5 s).`),
      holder),
  };
}
