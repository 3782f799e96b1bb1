// /ui/schemas — the registered JSON Schemas; /ui/schemas/{type} — view and
// edit one, with the server's validation errors shown inline.

import {ApiError, AuthError, getJSON, request} from "../api.js";
import {field, h, link, prettyJSON, problemBox, uiPath} from "../dom.js";

// editor is the schema form: a type (new schemas only), the document, and
// the errors of the last save under it.
function editor(ctx, {type, doc, isNew}) {
  const typeInput = isNew ? h("input", {id: "schema-type", name: "type", required: true, autocomplete: "off", placeholder: "com.example.order.placed"}) : null;
  const text = h("textarea", {id: "schema-doc", name: "schema", rows: 18, spellcheck: "false", "aria-describedby": "schema-errors"}, doc);
  const errors = h("div", {id: "schema-errors", "aria-live": "assertive"});
  const save = h("button", {type: "submit", id: "schema-save"}, isNew ? "Create schema" : "Save schema");

  function showError(node) {
    text.setAttribute("aria-invalid", "true");
    errors.replaceChildren(node);
  }

  const form = h("form", {onsubmit: async (ev) => {
    ev.preventDefault();
    errors.replaceChildren();
    text.removeAttribute("aria-invalid");
    const t = isNew ? typeInput.value.trim() : type;
    if (!t) {
      showError(problemBox(new Error("Give the event type the schema applies to.")));
      return;
    }
    try {
      JSON.parse(text.value);
    } catch (e) {
      showError(problemBox(new Error("The schema is not JSON: " + e.message)));
      return;
    }
    save.disabled = true;
    try {
      await request("/schemas/" + encodeURIComponent(t), {method: "PUT", body: text.value, headers: {"Content-Type": "application/schema+json"}, signal: ctx.signal});
      if (isNew) {
        ctx.navigate(uiPath("schemas", t));
        return;
      }
      errors.replaceChildren(h("p", {class: "notice"}, "Saved. Events of this type are validated against it from now on."));
    } catch (e) {
      if (e instanceof AuthError) {
        ctx.fail(e);
        return;
      }
      if (e.name === "AbortError") return;
      showError(problemBox(e));
    } finally {
      save.disabled = false;
    }
  }},
  typeInput ? field("Event type", typeInput) : null,
  field("JSON Schema", text),
  errors,
  h("div", {class: "actions"}, save));
  return form;
}

export async function schemasPage(ctx) {
  const {schemas} = await getJSON("/schemas", {signal: ctx.signal});
  return {
    title: "Schemas",
    node: h("section", {"aria-labelledby": "schemas-title"},
      h("h1", {id: "schemas-title"}, "Schemas"),
      h("p", {class: "muted"}, "Every collected event of a type with a schema must validate against it (422 otherwise)."),
      schemas.length
        ? h("ul", {id: "schema-list"}, schemas.map((t) => h("li", null, link(uiPath("schemas", t), h("span", {class: "mono"}, t)))))
        : h("p", {class: "empty"}, "No schemas registered."),
      h("h2", null, "New schema"),
      editor(ctx, {isNew: true, doc: prettyJSON({type: "object", required: ["id"], properties: {id: {type: "string"}}})})),
  };
}

export async function schemaPage(ctx) {
  const type = ctx.args.join("/");
  const res = await request("/schemas/" + encodeURIComponent(type), {signal: ctx.signal});
  const raw = await res.text();
  let doc = raw;
  try {
    doc = prettyJSON(JSON.parse(raw));
  } catch {
    // shown as stored
  }
  const message = h("div", {"aria-live": "polite"});
  const del = h("button", {type: "button", class: "danger", onclick: async () => {
    if (!confirm(`Delete the schema of ${type}? Events of this type will no longer be validated.`)) return;
    try {
      await request("/schemas/" + encodeURIComponent(type), {method: "DELETE", signal: ctx.signal});
      ctx.navigate("/ui/schemas");
    } catch (e) {
      if (e instanceof AuthError) ctx.fail(e);
      else if (e instanceof ApiError) message.replaceChildren(problemBox(e));
    }
  }}, "Delete schema");
  return {
    title: `Schema ${type}`,
    node: h("section", {"aria-labelledby": "schema-title"},
      h("p", {class: "crumbs"}, link("/ui/schemas", "Schemas"), " / "),
      h("h1", {id: "schema-title", class: "mono"}, type),
      editor(ctx, {type, doc}),
      message,
      h("div", {class: "actions"}, del)),
  };
}
