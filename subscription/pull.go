package subscription

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/subscription/sink"
)

// Pull keepalive and write limits.
const (
	pullKeepalive    = 15 * time.Second
	pullWriteTimeout = 30 * time.Second
	memberBuffer     = 1024
)

// group is the sink of a pull subscription: the members connected to this
// process. Each event goes to one member; a stream sticks to its member
// while that member is connected. Send waits for the member's ack or nack,
// the ack timeout (the send's deadline) or the member's disconnection.
type group struct {
	id    string
	stop  chan struct{} // closed when the last member leaves: the dispatcher ends
	ended chan struct{} // closed when the dispatcher has ended: members leave
	d     *dispatcher

	mu       sync.Mutex
	members  map[*member]struct{}
	affinity map[string]*member
	inflight map[int64]*waiter
	closing  bool
}

type member struct {
	frames   chan []byte
	gone     chan struct{}
	inflight int
}

type waiter struct {
	m   *member
	res chan sink.Outcome
}

func newGroup(id string) *group {
	return &group{
		id: id, stop: make(chan struct{}), ended: make(chan struct{}),
		members: map[*member]struct{}{}, affinity: map[string]*member{}, inflight: map[int64]*waiter{},
	}
}

// Send hands m to a member and waits for its answer.
func (g *group) Send(ctx context.Context, m *sink.Message) sink.Outcome {
	g.mu.Lock()
	mem := g.affinity[m.Stream]
	if mem == nil {
		for cand := range g.members {
			if mem == nil || cand.inflight < mem.inflight {
				mem = cand
			}
		}
		if mem == nil {
			g.mu.Unlock()
			return sink.Outcome{Kind: sink.RetryAfter, After: 200 * time.Millisecond, Err: "no member connected"}
		}
		g.affinity[m.Stream] = mem
	}
	w := &waiter{m: mem, res: make(chan sink.Outcome, 1)}
	g.inflight[m.Number] = w
	mem.inflight++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		if g.inflight[m.Number] == w {
			delete(g.inflight, m.Number)
		}
		mem.inflight--
		g.mu.Unlock()
	}()

	frame := []byte("id: " + strconv.FormatInt(m.Number, 10) + "\ndata: ")
	frame = append(frame, m.JSON()...)
	frame = append(frame, "\n\n"...)
	select {
	case mem.frames <- frame:
	case <-mem.gone:
		return sink.Outcome{Kind: sink.Retry, Err: "member disconnected"}
	case <-ctx.Done():
		return sink.Outcome{Kind: sink.Retry, Err: "not acknowledged within the ack timeout"}
	}
	select {
	case o := <-w.res:
		return o
	case <-mem.gone:
		return sink.Outcome{Kind: sink.Retry, Err: "member disconnected"}
	case <-ctx.Done():
		return sink.Outcome{Kind: sink.Retry, Err: "not acknowledged within the ack timeout"}
	}
}

// Close does nothing: members end with the dispatcher.
func (g *group) Close() error { return nil }

// settle applies an ack (action "") or a nack to numbers, all or none.
func (g *group) settle(numbers []int64, action string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range numbers {
		if g.inflight[n] == nil {
			return errNotInFlight(n)
		}
	}
	out := sink.Outcome{Kind: sink.Delivered}
	switch action {
	case "retry":
		out = sink.Outcome{Kind: sink.Retry, Err: "nacked by a member"}
	case "park":
		out = sink.Outcome{Kind: sink.Reject, Err: "nacked by a member (park)"}
	}
	for _, n := range numbers {
		w := g.inflight[n]
		delete(g.inflight, n)
		w.res <- out
	}
	return nil
}

// join adds a member to the pull group of subscription id, starting the
// group (and taking the lease) when this process has none.
func (m *Manager) join(ctx context.Context, id string) (*group, *member, error) {
	for {
		m.mu.Lock()
		g := m.groups[id]
		if g != nil && !g.closing {
			mem := &member{frames: make(chan []byte, memberBuffer), gone: make(chan struct{})}
			g.mu.Lock()
			g.members[mem] = struct{}{}
			g.mu.Unlock()
			m.mu.Unlock()
			return g, mem, nil
		}
		if g != nil {
			// The previous group is ending: wait for its dispatcher.
			done := g.ended
			m.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		err := m.startGroup(ctx, id)
		m.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
	}
}

// startGroup takes the lease and starts the dispatcher of a pull
// subscription. m.mu is held.
func (m *Manager) startGroup(ctx context.Context, id string) error {
	if m.ctx == nil || m.ctx.Err() != nil {
		return fmt.Errorf("%w: the server is shutting down", fossil.ErrUnavailable)
	}
	s, err := m.cfg.Store.GetSubscription(ctx, id)
	if err != nil {
		return err
	}
	c, err := compileStored(s)
	if err != nil {
		return err
	}
	if c.Paused {
		return fmt.Errorf("%w: subscription %q is paused", fossil.ErrUnavailable, id)
	}
	ok, err := m.cfg.Store.AcquireSubscriptionLease(ctx, id, m.holder, m.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	if !ok {
		return ErrServedElsewhere
	}
	g := newGroup(id)
	m.groups[id] = g
	m.mu.Unlock()
	g.d = m.start(m.ctx, s, c, g, g.stop)
	m.mu.Lock()
	go func() {
		<-g.d.done
		m.mu.Lock()
		if m.groups[id] == g {
			delete(m.groups, id)
		}
		g.mu.Lock()
		g.closing = true
		g.mu.Unlock()
		m.mu.Unlock()
		close(g.ended)
	}()
	return nil
}

// leave removes a member; its events in flight are delivered again. The
// last member to leave ends the group.
func (m *Manager) leave(g *group, mem *member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.members[mem]; !ok {
		return
	}
	delete(g.members, mem)
	for s, owner := range g.affinity {
		if owner == mem {
			delete(g.affinity, s)
		}
	}
	close(mem.gone)
	if len(g.members) == 0 && !g.closing {
		g.closing = true
		close(g.stop)
	}
}

// handlePull serves GET /subscriptions/{id}/sse: one member of a pull
// subscription's competing consumers.
func (m *Manager) handlePull(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := auth.CanConsume(r.Context(), id); err != nil {
		return err
	}
	s, err := m.cfg.Store.GetSubscription(r.Context(), id)
	if err != nil {
		return err
	}
	c, err := compileStored(s)
	if err != nil {
		return err
	}
	if c.Def.Protocol != ProtocolSSE {
		return fossil.Invalid("path.id", "subscription %q is delivered by %s, not pulled: only protocol SSE has members", id, c.Def.Protocol)
	}
	g, mem, err := m.join(r.Context(), id)
	if err != nil {
		if err == ErrServedElsewhere {
			if ok, ferr := m.forward(w, r, id, nil); ok || ferr != nil {
				return ferr
			}
			w.Header().Set("Retry-After", "1")
		}
		return err
	}
	defer m.leave(g, mem)

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil //nolint:nilerr // the client is gone
	}
	keepalive := time.NewTicker(pullKeepalive)
	defer keepalive.Stop()
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(pullWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-g.ended:
			return nil
		case f := <-mem.frames:
			buf := f
			// Send what else is queued in the same write.
			for more := true; more && len(buf) < 64<<10; {
				select {
				case f := <-mem.frames:
					buf = append(buf, f...)
				default:
					more = false
				}
			}
			if !write(buf) {
				return nil
			}
		case <-keepalive.C:
			if !write([]byte(": keepalive\n\n")) {
				return nil
			}
		}
	}
}
