// Package collector implements POST /collect: CloudEvents in binary,
// structured and batched mode are decoded, validated and appended to the
// stream named by the Fossil-Stream header.
//
// # Guarantees
//
//   - A 200 (or 202) is sent only after the events are durably committed.
//   - A batch is stored entirely or not at all.
//   - Event numbers are dense and in commit order (see store.Appender).
//   - Retrying an identical event (same source, id, stream and content) is
//     answered with the original numbers and Fossil-Duplicate: true; the
//     same source and id with other content is a 409.
//   - Bad input gets a 400, 413, 415 or 422 problem; a database that is down
//     or too slow gets a 503, never a 2xx and never a hang.
package collector
