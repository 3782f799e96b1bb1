// Package schema is Fossil's event schema registry: a JSON Schema may be
// registered per CloudEvents type, and every collected event of that type
// must then validate against it.
//
// # Routes
//
// [Registry.Register] adds:
//
//	PUT    /schemas/{type}  register or replace (201 new, 200 replaced)
//	GET    /schemas/{type}  the document as registered (application/schema+json)
//	DELETE /schemas/{type}  remove (204; 404 when unknown)
//	GET    /schemas         {"schemas": [type, …]}
//
// {type} is path-escaped, so a type may contain '/'.
//
// # Guarantees
//
//   - Validation does no I/O: compiled schemas live in an immutable map
//     behind an atomic pointer, replaced as a whole on every reload.
//   - A process sees its own PUT or DELETE as soon as the request returns.
//     Other processes reload when the change's notification wakes them
//     (store.ChannelSchemas, sent inside the writing transaction), after
//     every reconnect of the notify listener (which may have missed
//     notifications), and on a slow safety poll.
//   - Schemas are never fetched: the only document a compiler sees is the
//     one registered for the type, plus the draft meta-schemas built into
//     the validator library. A $ref to any other URL fails to compile.
//   - Drafts 2020-12 and 7 (and 2019-09, 6, 4) are supported; $schema picks
//     the draft and a schema without $schema is read as 2020-12. "format" is
//     an assertion in draft 7 and an annotation in 2019-09 and later, as the
//     specifications say.
//   - A stored schema that does not compile (it can only get there by
//     bypassing the API, or through a validator upgrade) is logged once per
//     document version and not enforced, so a broken schema never blocks
//     every write of its type.
package schema
