package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

// Handler handles one event of a stream. Returning an error stops
// [Client.Subscribe] or [Client.Consume], which return it.
type Handler func(ctx context.Context, ev *Event) error

// MaxFrame is the largest SSE line the client reads (an event of the
// largest body the server accepts is well below it); a longer one breaks
// the connection.
const MaxFrame = 32 << 20

// Subscribe follows the events whose stream matches any of the templates
// (RFC 6570, as GET /sse takes them: "orders/{id}", "{+all}", a literal
// name), starting after event number after (0: from the first event):
// first the stored ones, then live ones, in event-number order.
//
// Subscribe calls h for one event at a time and reads the next event only
// when h returns: a slow handler slows the read (the server holds the
// rest), so memory stays bounded. When the connection breaks (network
// error, server restart, a connection silent for longer than the idle
// timeout) Subscribe reconnects with backoff and resumes after the last
// event h handled, with Last-Event-Id: no event is skipped or handled
// twice. It returns h's error, a 4xx answer as an [*Error], or ctx.Err()
// once ctx is done.
func (c *Client) Subscribe(ctx context.Context, streams []string, after int64, h Handler) error {
	f := &follower{c: c, path: "/sse", query: url.Values{"stream": streams}, cursor: after}
	f.handle = func(ctx context.Context, ev *Event) error { return h(ctx, ev) }
	return f.run(ctx)
}

// follower reads one SSE resource, reconnecting after breaks.
type follower struct {
	c      *Client
	path   string
	query  url.Values
	cursor int64 // the number of the last event handled
	// busyRetry retries a 409 on connect (a consumer name still held).
	busyRetry bool
	handle    func(context.Context, *Event) error
	tick      <-chan time.Time
	onTick    func(context.Context) error
	onBreak   func(context.Context) // after a connection broke, before reconnecting
}

// errStop marks an error that ends run (handler or tick error) as opposed
// to a broken connection.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

func (f *follower) run(ctx context.Context) error {
	failures := 0
	for {
		conn, err := f.open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var pe *Error
			if errors.As(err, &pe) && pe.Status < 500 && !(f.busyRetry && pe.Status == http.StatusConflict) {
				return err
			}
			failures++
		} else {
			failures = 0
			err = f.serve(ctx, conn)
			var stop errStop
			if errors.As(err, &stop) {
				return stop.err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if f.onBreak != nil {
				f.onBreak(ctx)
			}
		}
		// At least a short pause even after a stream that worked, so a
		// server that accepts and drops at once is not hammered.
		if err := sleep(ctx, f.c.retry.backoff(max(failures, 1))); err != nil {
			return err
		}
	}
}

func (f *follower) open(ctx context.Context) (*sseConn, error) {
	r := &request{method: http.MethodGet, path: f.path, query: f.query, header: http.Header{"Accept": {"text/event-stream"}}}
	if f.cursor > 0 {
		r.header.Set(fossil.HeaderLastEventID, strconv.FormatInt(f.cursor, 10))
	}
	cctx, cancel := context.WithCancel(ctx)
	resp, _, err := f.c.do(cctx, r, false)
	if err != nil {
		cancel()
		return nil, err
	}
	return newSSEConn(resp.Body, cancel, f.c.idle), nil
}

type frame struct {
	id   string
	data []byte
	err  error
}

// serve handles the events of one connection until it breaks (an error
// that is not errStop) or the handler, a tick or ctx stops it.
func (f *follower) serve(ctx context.Context, conn *sseConn) error {
	frames := make(chan frame) // unbuffered: the reader waits for the handler
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			id, data, err := conn.next()
			select {
			case frames <- frame{id: id, data: data, err: err}:
				if err != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	defer func() {
		close(done)
		conn.close()
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.tick:
			if err := f.onTick(ctx); err != nil {
				return errStop{err}
			}
		case fr := <-frames:
			if fr.err != nil {
				return fr.err
			}
			ev, err := parseEvent(fr.data)
			if err != nil {
				return errStop{err}
			}
			if ev.Number <= f.cursor {
				continue // already handled before a reconnect
			}
			if err := f.handle(ctx, ev); err != nil {
				return errStop{err}
			}
			f.cursor = ev.Number
		}
	}
}

// sseConn reads Server-Sent Events frames from one response body.
type sseConn struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	sc     *bufio.Scanner
	idle   *time.Timer
	limit  time.Duration
}

func newSSEConn(body io.ReadCloser, cancel context.CancelFunc, idle time.Duration) *sseConn {
	c := &sseConn{body: body, cancel: cancel, limit: idle}
	c.idle = time.AfterFunc(idle, c.close)
	c.sc = bufio.NewScanner(readerFunc(func(p []byte) (int, error) {
		n, err := body.Read(p)
		if n > 0 {
			c.idle.Reset(c.limit)
		}
		return n, err
	}))
	c.sc.Buffer(make([]byte, 0, 64<<10), MaxFrame)
	return c
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func (c *sseConn) close() {
	c.idle.Stop()
	c.cancel()
	_ = c.body.Close()
}

// next returns the next event frame's id and data, skipping comments.
func (c *sseConn) next() (id string, data []byte, err error) {
	var (
		buf     bytes.Buffer
		hasData bool
	)
	for c.sc.Scan() {
		line := c.sc.Bytes()
		if len(line) == 0 {
			if hasData {
				return id, buf.Bytes(), nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id = string(value)
		case "data":
			if hasData {
				buf.WriteByte('\n')
			}
			buf.Write(value)
			hasData = true
		}
	}
	if err := c.sc.Err(); err != nil {
		return "", nil, fmt.Errorf("fossil client: read stream: %w", err)
	}
	return "", nil, fmt.Errorf("fossil client: read stream: %w", io.ErrUnexpectedEOF)
}
