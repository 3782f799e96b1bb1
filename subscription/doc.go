// Package subscription delivers events to where they are needed: the
// subscription manager (POST/GET/PUT/DELETE /subscriptions, parked events,
// pull members with ack and nack), the filters (CloudEvents Subscriptions
// API dialects and CESQL) and the dispatcher.
//
// # Guarantees
//
//   - Every matching event is delivered at least once, in event-number
//     order within each stream; different streams go out concurrently.
//   - Each subscription is delivered by one process at a time, the holder
//     of its lease in PostgreSQL; a dead process loses it within the lease
//     TTL and another resumes from the durable position and pending set.
//   - Without crashes or timeouts each event is delivered exactly once.
//   - The durable position only passes events that are delivered, parked or
//     filtered out.
//
// See docs/ARCHITECTURE.md, "Subscriptions", for the design.
package subscription
