// Package feed delivers the event log over Server-Sent Events. It is shared
// by the /sse endpoint (package streamer) and named consumers (package
// consumer), which must not import each other.
//
// # Guarantees
//
//   - Events are sent in strictly increasing event number, without gap or
//     duplicate, across the switch from history to live: a subscriber has
//     one cursor and always reads "after the cursor", from the tail cache or
//     from SQL. Because event numbers are assigned in commit order (see
//     store.Appender), an event numbered N is visible only after every event
//     below N, so reading "after the cursor" can never skip one.
//   - One tailer goroutine per process reads each newly committed batch
//     once, renders its frames once, and keeps them in a bounded ring; live
//     subscribers copy from the ring, so N subscribers cost one query.
//   - The tailer is woken by the notifier (one NOTIFY per committed group)
//     and by a jittered poll of the log head, so a lost notification only
//     delays delivery.
//   - A subscriber never holds a database connection while it writes, and
//     never buffers more than one page: a client that stops reading blocks
//     only its own goroutine, until the write deadline ends the stream; it
//     resumes later with Last-Event-Id.
//   - Streams end promptly when the client goes away, the server shuts down
//     (the request context is cancelled), or the token expires.
package feed
