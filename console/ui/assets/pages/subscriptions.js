// /ui/subscriptions — every subscription's state and lag;
// /ui/subscriptions/{id} — one, with its parked events and a replay button.

import {getJSON, request} from "../api.js";
import {fmtNumber, h, link, prettyJSON, problemBox, swap, table, timeEl, uiPath} from "../dom.js";

const REFRESH = 2000;

function stateBadge(sub) {
  const st = sub.status || {};
  if (st.state === "disabled") return h("span", {class: "badge bad"}, "disabled");
  if (sub.config && sub.config.paused === "true") return h("span", {class: "badge warn"}, "paused");
  return h("span", {class: "badge ok"}, st.state || "active");
}

function target(sub) {
  if (sub.protocol === "SSE") return "pull (SSE)";
  return `${sub.protocol} ${sub.sink || ""}`.trim();
}

function listView(subs) {
  return table("Subscriptions", ["ID", "Delivers to", "Streams", "State", "Position", "Lag", "Delivered", "Parked", "Last error"], subs, (s) => {
    const st = s.status || {};
    return [
      link(uiPath("subscriptions", s.id), h("span", {class: "mono"}, s.id)),
      target(s),
      h("span", {class: "mono"}, (s.config && s.config.streams) || "every stream"),
      stateBadge(s),
      fmtNumber(st.position),
      fmtNumber(st.lag),
      fmtNumber(st.delivered),
      st.parked ? h("strong", null, fmtNumber(st.parked)) : "0",
      st.lasterror ? h("span", {class: "mono"}, st.lasterror) : h("span", {class: "muted"}, "none"),
    ];
  }, "No subscriptions. Create one with POST /subscriptions (README, Subscriptions).");
}

export async function subscriptionsPage(ctx) {
  const load = () => getJSON("/subscriptions", {signal: ctx.signal});
  const holder = h("div", {id: "subscriptions"}, listView(await load()));
  ctx.every(REFRESH, async () => swap(holder, listView(await load())));
  return {
    title: "Subscriptions",
    node: h("section", {"aria-labelledby": "subs-title"},
      h("h1", {id: "subs-title"}, "Subscriptions"),
      holder),
  };
}

export async function subscriptionPage(ctx) {
  const id = ctx.args[0];
  const base = "/subscriptions/" + encodeURIComponent(id);
  const load = () => Promise.all([getJSON(base, {signal: ctx.signal}), getJSON(base + "/parked", {signal: ctx.signal})]);
  const message = h("div", {id: "sub-message", "aria-live": "polite"});
  const holder = h("div");

  async function act(fn, done) {
    message.replaceChildren();
    try {
      await fn();
      message.replaceChildren(h("p", {class: "notice"}, done));
      shown = "";
      await refresh();
    } catch (e) {
      if (e.name === "AbortError") return;
      message.replaceChildren(problemBox(e));
    }
  }

  function view(sub, parked) {
    const st = sub.status || {};
    const replay = h("button", {type: "button", id: "replay", disabled: !parked.length, onclick: () => act(
      () => request(base + "/parked/replay", {method: "POST", signal: ctx.signal}),
      `Replay requested: ${parked.length} parked event${parked.length === 1 ? "" : "s"} will be delivered again.`)}, "Replay parked events");
    return h("div", null,
      h("div", {class: "cards"},
        h("div", {class: "card"}, h("div", {class: "card-label"}, "State"), h("div", {class: "card-value"}, stateBadge(sub))),
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Position"), h("div", {class: "card-value"}, fmtNumber(st.position))),
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Lag"), h("div", {class: "card-value", id: "sub-lag"}, fmtNumber(st.lag))),
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Delivered"), h("div", {class: "card-value", id: "sub-delivered"}, fmtNumber(st.delivered))),
        h("div", {class: "card"}, h("div", {class: "card-label"}, "Parked"), h("div", {class: "card-value", id: "sub-parked"}, fmtNumber(st.parked)))),
      st.lasterror ? h("p", null, "Last error: ", h("span", {class: "mono"}, st.lasterror)) : null,
      h("h2", null, "Parked events"),
      h("div", {class: "actions"}, replay),
      table("Parked events", ["Event", "Attempts", "Last error", "Parked", ""], parked, (p) => [
        link(uiPath("events", p.fossileventnumber), "#" + p.fossileventnumber),
        fmtNumber(p.attempts),
        h("span", {class: "mono"}, p.lasterror || ""),
        timeEl(p.parkedat),
        h("button", {type: "button", class: "danger", "aria-label": `Drop parked event ${p.fossileventnumber}`, onclick: () => act(
          () => request(`${base}/parked/${p.fossileventnumber}`, {method: "DELETE", signal: ctx.signal}),
          `Parked event ${p.fossileventnumber} dropped.`)}, "Drop"),
      ], "No parked events."),
      h("h2", null, "Definition"),
      h("pre", null, prettyJSON(Object.fromEntries(Object.entries(sub).filter(([k]) => k !== "status")))));
  }

  // Redrawn only when something changed, so that a refresh does not take
  // the keyboard focus away from a button.
  let shown = "";
  const refresh = async () => {
    const [s, p] = await load();
    const key = JSON.stringify([s, p]);
    if (key !== shown) {
      shown = key;
      swap(holder, view(s, p.parked));
    }
  };
  await refresh();
  ctx.every(REFRESH, refresh);
  return {
    title: `Subscription ${id}`,
    node: h("section", {"aria-labelledby": "sub-title"},
      h("p", {class: "crumbs"}, link("/ui/subscriptions", "Subscriptions"), " / "),
      h("h1", {id: "sub-title", class: "mono"}, id),
      message,
      holder),
  };
}
