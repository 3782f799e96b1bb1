// Package streamer serves the event log to readers: GET /sse (Server-Sent
// Events, history then live, filtered by RFC 6570 stream templates and
// resumable with Last-Event-Id) and the query endpoints GET
// /streams/{stream}/events, GET /events and GET /events/{number}.
//
// # Guarantees
//
// Every stream delivers events in strictly increasing event number with no
// gap and no duplicate, also across the switch from history to live and
// across reconnects with Last-Event-Id (see package feed). Reads filter by
// the token's read grant, so a broad template never leaks an event outside
// it.
package streamer
