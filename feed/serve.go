package feed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/store"
)

// Params selects what a stream delivers.
type Params struct {
	// Templates select streams; an event is sent when any matches.
	Templates fossil.Templates
	// Allow, when non-nil, must also accept the event's stream (the
	// token's read grant).
	Allow func(stream string) bool
	// After is the cursor: events with a greater number are sent.
	After int64
	// Expires, when non-zero, ends the stream at that time (token expiry).
	Expires time.Time
	// OnStart, when set, runs after the headers are flushed.
	OnStart func()
}

// ErrTooManyClients is returned by [Hub.Serve] when MaxClients streams are
// open; nothing has been written, so the caller answers 503.
var ErrTooManyClients = fmt.Errorf("%w: too many open event streams; retry later", fossil.ErrUnavailable)

// Serve streams events to w until the client goes away, ctx ends, the
// token expires or a write times out. It returns an error only before the
// response has started (the caller then writes a problem); once headers are
// sent it ends the stream silently and the client resumes with its cursor.
func (h *Hub) Serve(ctx context.Context, w http.ResponseWriter, p Params) error {
	if n := h.clients.Add(1); h.cfg.MaxClients > 0 && n > int64(h.cfg.MaxClients) {
		h.clients.Add(-1)
		w.Header().Set("Retry-After", "5")
		return ErrTooManyClients
	}
	defer h.clients.Add(-1)

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	// HTTP/1.1 without chunking: the body runs until the connection closes,
	// as the SSE specification suggests. net/http then writes each step's
	// frames to the socket in one write; chunked, a step of more than its
	// 4 KiB buffer took three (and an SSE connection is never reused for
	// another request anyway). HTTP/2 drops the header.
	hd.Set("Transfer-Encoding", "identity")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil //nolint:nilerr // the client is gone
	}
	if p.OnStart != nil {
		p.OnStart()
	}

	s := &subscriber{hub: h, w: w, rc: rc, p: p, cursor: p.After}
	// Cancelling ctx (client gone, server shutdown) does not interrupt a
	// write blocked on a client that stopped reading, which would hold
	// http.Server.Shutdown for up to the write timeout. Pulling the write
	// deadline in does.
	unblocked := make(chan struct{})
	stopUnblock := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		s.abort()
	})
	defer func() {
		if !stopUnblock() {
			<-unblocked // the response must not be touched after Serve returns
		}
	}()
	if !p.Expires.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.Expires)
		defer cancel()
	}
	err := s.run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		h.logger.DebugContext(ctx, "event stream ended", "cursor", s.cursor, "error", err)
	}
	return nil
}

type subscriber struct {
	hub    *Hub
	w      http.ResponseWriter
	rc     *http.ResponseController
	p      Params
	cursor int64
	buf    []byte
	reader *store.Reader // reads history behind the ring; made on first use
	// counted is set while the subscriber is counted in Hub.readers.
	counted bool
	// next is the page after the one being written, read meanwhile while
	// the subscriber is behind (see [subscriber.prefetch]).
	next *page

	// mu orders abort against write's deadline update, so that a write
	// never starts with a fresh deadline after the stream was aborted.
	mu      sync.Mutex
	aborted bool
	writing bool
}

func (s *subscriber) run(ctx context.Context) error {
	defer func() {
		s.dropNext()
		s.reading(false)
	}()
	keepalive := time.NewTimer(s.hub.cfg.Keepalive)
	defer keepalive.Stop()
	for {
		// Take the wake-up channel before looking, so an advance between
		// the look and the wait is not missed.
		changed := s.hub.wait()
		sent, err := s.step(ctx)
		if err != nil {
			return err
		}
		if sent {
			keepalive.Reset(s.hub.cfg.Keepalive)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-keepalive.C:
			if err := s.write([]byte(": keepalive\n\n")); err != nil {
				return err
			}
			keepalive.Reset(s.hub.cfg.Keepalive)
		}
	}
}

// writeChunk is the most a subscriber copies into its own buffer before
// writing: small frames are gathered up to it, larger ones are written
// straight from the frame (shared by every subscriber).
const writeChunk = 64 << 10

// step sends the next page after the cursor, from the ring or from SQL. It
// reports whether the cursor moved (so the caller loops without waiting).
//
// Memory: a step holds one page (at most PageSize events and its share of
// CatchUpBytes, at most PageBytes, of documents, plus one event) and a
// buffer of at most writeChunk, plus one rendered frame when a page from
// SQL holds an event larger than that. Frames from the ring are shared
// with every subscriber; events from SQL are dropped as soon as they are
// written.
func (s *subscriber) step(ctx context.Context) (bool, error) {
	page := s.hub.cfg.PageSize
	frames, ok := s.hub.fromRing(s.cursor, page, s.hub.cfg.PageBytes)
	if ok {
		s.dropNext() // the ring has caught up with the read ahead
		s.reading(false)
		if len(frames) == 0 {
			return false, nil
		}
		last := frames[len(frames)-1].number
		delivered := 0
		var lag time.Duration
		for i, f := range frames {
			frames[i] = nil
			if !s.match(f.stream) {
				continue
			}
			if err := s.send(f.data); err != nil {
				return false, err
			}
			delivered++
			lag = time.Since(f.commit)
		}
		if err := s.flush(); err != nil {
			return false, err
		}
		s.cursor = last
		if delivered > 0 && s.hub.cfg.ObserveFunc != nil {
			s.hub.cfg.ObserveFunc(delivered, lag)
		}
		return true, nil
	}
	// Behind the cache: read a page from SQL, up to the newest event the
	// hub knows (every event up to it is committed). The reader touches
	// only the matching streams, and says how far it has looked, so a
	// cursor moves past stretches of the log without matches at once.
	known := s.hub.Last()
	if known <= s.cursor {
		return false, nil
	}
	if s.reader == nil {
		s.reader = s.hub.cfg.Store.NewReader(s.match)
	}
	s.reading(true)
	var (
		events  []*fossil.Event
		scanned int64
		err     error
	)
	if p := s.next; p != nil && p.after == s.cursor {
		s.next = nil
		<-p.done
		events, scanned, err = p.events, p.scanned, p.err
	} else {
		s.dropNext()
		s.reader.MaxBytes = s.hub.readerPageBytes()
		events, scanned, err = s.reader.Read(ctx, s.cursor, known, page)
	}
	if err != nil {
		return false, err
	}
	if scanned < known {
		s.prefetch(ctx, scanned, known)
	}
	var newest time.Time
	if len(events) > 0 {
		newest = events[len(events)-1].CommittedAt
	}
	for i, e := range events {
		events[i] = nil
		if err := s.sendEvent(e); err != nil {
			return false, err
		}
	}
	if err := s.flush(); err != nil {
		return false, err
	}
	s.cursor = scanned
	// The delivery lag of a catch-up read is as real as a live one:
	// observed on both paths, from the newest event's commit time.
	if len(events) > 0 && s.hub.cfg.ObserveFunc != nil {
		s.hub.cfg.ObserveFunc(len(events), time.Since(newest))
	}
	return true, nil
}

// reading counts the subscriber among those reading history from SQL
// (Hub.readers, which share Config.CatchUpBytes) or takes it out: while it
// reads pages, not while the ring serves it.
func (s *subscriber) reading(on bool) {
	if on != s.counted {
		s.counted = on
		if on {
			s.hub.readers.Add(1)
		} else {
			s.hub.readers.Add(-1)
		}
	}
}

// page is a page of history read ahead by [subscriber.prefetch].
type page struct {
	after   int64
	done    chan struct{} // closed when the fields below are set
	events  []*fossil.Event
	scanned int64
	err     error
}

// prefetch reads the page after `after` (up to through, every event up to
// it committed) in the background, while the caller writes the current
// one: the database reads the next page while the client takes this one,
// so a catch-up is bounded by the slower of the two rather than by their
// sum (on a 100k-event stream, about twice as fast). A subscriber behind
// the ring thus holds at most two pages; one that is caught up, none.
func (s *subscriber) prefetch(ctx context.Context, after, through int64) {
	p := &page{after: after, done: make(chan struct{})}
	s.next = p
	s.reader.MaxBytes = s.hub.readerPageBytes()
	go func() {
		defer close(p.done)
		p.events, p.scanned, p.err = s.reader.Read(ctx, after, through, s.hub.cfg.PageSize)
	}()
}

// dropNext waits for a page read ahead, if any, and drops it: the Reader
// is not safe for concurrent use, and nothing may run after Serve returns.
func (s *subscriber) dropNext() {
	if p := s.next; p != nil {
		s.next = nil
		<-p.done
	}
}

// send queues one frame: it is copied into the subscriber's buffer when it
// fits, and written straight away otherwise (after what is queued).
func (s *subscriber) send(f []byte) error {
	if len(s.buf)+len(f) <= writeChunk {
		s.buf = append(s.buf, f...)
		return nil
	}
	if err := s.flush(); err != nil {
		return err
	}
	if len(f) <= writeChunk {
		s.buf = append(s.buf, f...)
		return nil
	}
	return s.write(f)
}

// sendEvent queues the frame of e, rendered straight into the buffer when
// it fits there, and rendered on its own and written otherwise.
func (s *subscriber) sendEvent(e *fossil.Event) error {
	bound := frameBound(e)
	if bound > writeChunk {
		return s.send(appendFrame(nil, e))
	}
	if len(s.buf)+bound > writeChunk {
		if err := s.flush(); err != nil {
			return err
		}
	}
	if s.buf == nil {
		s.buf = make([]byte, 0, writeChunk)
	}
	s.buf = appendFrame(s.buf, e)
	return nil
}

// frameBound is at least the length of e's frame (appendFrame): the
// document, the numbers and the names, each character of a name escaped
// at most as \uXXXX.
func frameBound(e *fossil.Event) int {
	n := len(e.Doc) + 192 + 6*len(e.Stream)
	for _, a := range e.ExpectAck {
		n += 1 + 6*len(a)
	}
	return n
}

// flush writes what send has queued.
func (s *subscriber) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	err := s.write(s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *subscriber) match(stream string) bool {
	if !s.p.Templates.Match(stream) {
		return false
	}
	return s.p.Allow == nil || s.p.Allow(stream)
}

// errAborted ends a stream whose context ended while it was writing.
var errAborted = errors.New("event stream aborted")

// abort makes a write in progress fail at once and later writes fail
// before they start. It may run concurrently with write. The deadline is
// touched only when a write is in progress, so that a stream aborted while
// idle still ends with a proper end of the response.
func (s *subscriber) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	if s.writing {
		_ = s.rc.SetWriteDeadline(time.Now())
	}
}

// write sends b and flushes it within the write timeout.
func (s *subscriber) write(b []byte) error {
	s.mu.Lock()
	if s.aborted {
		s.mu.Unlock()
		return errAborted
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
	s.writing = true
	s.mu.Unlock()
	_, err := s.w.Write(b)
	if err == nil {
		err = s.rc.Flush()
	}
	s.mu.Lock()
	s.writing = false
	s.mu.Unlock()
	return err
}

// appendFrame renders one SSE frame: "id: N\ndata: <json>\n\n".
func appendFrame(b []byte, e *fossil.Event) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, e.Number, 10)
	b = append(b, "\ndata: "...)
	b = e.AppendJSON(b)
	return append(b, "\n\n"...)
}
