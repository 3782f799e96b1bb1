// Package notify owns the one LISTEN connection of a process and fans
// notifications out to in-process subscribers.
//
// # Guarantees
//
//   - A notification is a wake-up, not data: subscribers re-read the store
//     after their own cursor, so ordering and completeness come from SQL.
//   - Publishing never blocks. Each subscription has a channel of capacity
//     one that coalesces wake-ups, so a slow subscriber misses nothing: it
//     wakes once and reads everything that is new.
//   - After every (re)connect all subscribers are woken, because
//     notifications sent while the connection was down are lost.
//   - The listener reconnects with exponential backoff and re-LISTENs;
//     connect and LISTEN are bounded by timeouts, and an idle connection is
//     pinged so a dead one is noticed.
//
// Lock order: Broadcaster.mu is the only mutex; it is never held while
// blocking.
package notify

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is one database connection that can LISTEN. The store implements
// it; tests wrap the real one to inject failures.
type Listener interface {
	Connect(ctx context.Context) error
	Listen(ctx context.Context, channel string) error
	// WaitForNotification blocks until a notification arrives or ctx ends.
	WaitForNotification(ctx context.Context) (channel, payload string, err error)
	Ping(ctx context.Context) error
	Close(ctx context.Context) error
}

// Config configures a [Broadcaster].
type Config struct {
	// Channels to LISTEN on.
	Channels []string
	Logger   *slog.Logger
	// PingInterval is how long the connection may stay silent before it is
	// pinged; 0 means 5s.
	PingInterval time.Duration
	// Timeout bounds Connect, LISTEN and Ping; 0 means 10s.
	Timeout time.Duration
	// MaxBackoff caps the reconnect backoff; 0 means 5s.
	MaxBackoff time.Duration
}

// Broadcaster fans notifications out to subscriptions. Its zero value is not
// usable; call [New].
type Broadcaster struct {
	listener Listener // nil: poll-only, never woken by the database
	cfg      Config
	logger   *slog.Logger

	mu   sync.Mutex
	subs map[string]map[string]map[*Subscription]struct{} // channel -> payload filter -> set
	// local is, per channel, the position up to which this process has
	// woken its own subscribers (see [Broadcaster.Local]).
	local map[string]int64

	buf      chan notification
	connects chan struct{} // signalled after each connect, for tests
	cancel   context.CancelFunc
	done     chan struct{}
}

type notification struct{ channel, payload string }

// Subscription receives wake-ups. Its channel has capacity one.
type Subscription struct {
	b       *Broadcaster
	channel string
	filters []string
	c       chan struct{}
	once    sync.Once
	// newest is the largest number carried by the payloads of the
	// wake-ups since the last [Subscription.Newest] (see there).
	newest atomic.Int64
}

// Newest returns the largest payload, read as a decimal number, of the
// wake-ups since its last call, and forgets them: 0 when there was none,
// math.MaxInt64 when one carried no number (a payload that is not one,
// or [Broadcaster.WakeAll], which stands for notifications that may have
// been lost). A subscriber of a channel whose payload is a position (the
// newest committed event number) can tell from it whether a wake-up
// brings anything beyond what it already knows.
func (s *Subscription) Newest() int64 { return s.newest.Swap(0) }

// note records n for Newest.
func (s *Subscription) note(n int64) {
	for {
		old := s.newest.Load()
		if n <= old || s.newest.CompareAndSwap(old, n) {
			return
		}
	}
}

// C returns the wake-up channel.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Close unsubscribes; it is safe to call more than once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		b := s.b
		b.mu.Lock()
		defer b.mu.Unlock()
		byFilter := b.subs[s.channel]
		for _, f := range s.filters {
			set := byFilter[f]
			delete(set, s)
			if len(set) == 0 {
				delete(byFilter, f)
			}
		}
		if len(byFilter) == 0 {
			delete(b.subs, s.channel)
		}
	})
}

func (s *Subscription) wake() {
	select {
	case s.c <- struct{}{}:
	default: // a wake-up is already pending: coalesce
	}
}

// New returns a Broadcaster. With a nil listener it never receives database
// notifications (poll-only mode); [Broadcaster.Notify] still works locally.
func New(listener Listener, cfg Config) *Broadcaster {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Broadcaster{
		listener: listener,
		cfg:      cfg,
		logger:   cfg.Logger.With("component", "notify"),
		subs:     map[string]map[string]map[*Subscription]struct{}{},
		buf:      make(chan notification, 1024),
		connects: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

// Subscribe returns a subscription woken by notifications on channel whose
// payload equals one of filters (or by every notification on channel when
// no filter is given), and by every reconnect.
func (b *Broadcaster) Subscribe(channel string, filters ...string) *Subscription {
	if len(filters) == 0 {
		filters = []string{""}
	}
	s := &Subscription{b: b, channel: channel, filters: filters, c: make(chan struct{}, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	byFilter := b.subs[channel]
	if byFilter == nil {
		byFilter = map[string]map[*Subscription]struct{}{}
		b.subs[channel] = byFilter
	}
	for _, f := range filters {
		set := byFilter[f]
		if set == nil {
			set = map[*Subscription]struct{}{}
			byFilter[f] = set
		}
		set[s] = struct{}{}
	}
	return s
}

// Notify wakes the subscribers of (channel, payload) in this process. It is
// what a database notification does, and lets the process that wrote
// something wake its own subscribers without waiting for the round trip.
func (b *Broadcaster) Notify(channel, payload string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	byFilter := b.subs[channel]
	if len(byFilter) == 0 {
		return
	}
	n, err := strconv.ParseInt(payload, 10, 64)
	if err != nil || n < 0 {
		n = math.MaxInt64
	}
	for s := range byFilter[""] {
		s.note(n)
		s.wake()
	}
	if payload != "" {
		for s := range byFilter[payload] {
			s.note(n)
			s.wake()
		}
	}
}

// Local tells the broadcaster that this process has itself woken its
// subscribers of channel (a channel whose payload is a position, such as
// the newest committed event number) for every position up to n: it
// calls Local after those wake-ups. A database notification on channel
// whose payload is a number at or below n then wakes nobody: it is the
// echo of a commit of this process, or of an earlier commit of another
// one, which the subscribers learnt of by that same wake-up. A
// notification of anything newer, or without a number, is delivered.
func (b *Broadcaster) Local(channel string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.local == nil {
		b.local = map[string]int64{}
	}
	if n > b.local[channel] {
		b.local[channel] = n
	}
}

// echo reports whether a database notification is covered by [Broadcaster.Local].
func (b *Broadcaster) echo(channel, payload string) bool {
	b.mu.Lock()
	local, ok := b.local[channel]
	b.mu.Unlock()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(payload, 10, 64)
	return err == nil && n <= local
}

// WakeAll wakes every subscription.
func (b *Broadcaster) WakeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, byFilter := range b.subs {
		for _, set := range byFilter {
			for s := range set {
				s.note(math.MaxInt64)
				s.wake()
			}
		}
	}
}

// Start runs the listener loop until [Broadcaster.Stop]. The first connect
// is attempted before Start returns, so a database that is down at start is
// reported (the loop keeps retrying in the background).
func (b *Broadcaster) Start(ctx context.Context) error {
	ctx, b.cancel = context.WithCancel(ctx)
	if b.listener == nil {
		close(b.done)
		return nil
	}
	var firstErr error
	if err := b.connect(ctx); err != nil {
		firstErr = err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.deliver(ctx) }()
	go func() { defer wg.Done(); b.loop(ctx, firstErr == nil) }()
	go func() { wg.Wait(); close(b.done) }()
	return firstErr
}

// Stop ends the loop and closes the connection.
func (b *Broadcaster) Stop() {
	if b.cancel != nil {
		b.cancel()
	}
	<-b.done
}

// Listener returns the listener given to [New]; nil in poll-only mode.
// Tests use it to find and kill the connection.
func (b *Broadcaster) Listener() Listener { return b.listener }

// Connected returns a channel signalled after each successful (re)connect,
// for tests that wait for recovery.
func (b *Broadcaster) Connected() <-chan struct{} { return b.connects }

func (b *Broadcaster) connect(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := b.listener.Connect(cctx); err != nil {
		return err
	}
	for _, ch := range b.cfg.Channels {
		if err := b.listener.Listen(cctx, ch); err != nil {
			_ = b.listener.Close(context.WithoutCancel(ctx))
			return err
		}
	}
	// Anything sent while we were not listening is lost: wake everyone.
	b.WakeAll()
	select {
	case b.connects <- struct{}{}:
	default:
	}
	return nil
}

func (b *Broadcaster) loop(ctx context.Context, connected bool) {
	backoff := 100 * time.Millisecond
	for {
		if !connected {
			if err := b.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				b.logger.WarnContext(ctx, "listener connect failed", "error", err, "retry_in", backoff)
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(backoff*2, b.cfg.MaxBackoff)
				continue
			}
			b.logger.InfoContext(ctx, "listener connected")
			backoff = 100 * time.Millisecond
		}
		err := b.waitOnce(ctx)
		if ctx.Err() != nil {
			_ = b.listener.Close(context.WithoutCancel(ctx))
			return
		}
		b.logger.WarnContext(ctx, "listener lost its connection; reconnecting", "error", err)
		_ = b.listener.Close(context.WithoutCancel(ctx))
		connected = false
	}
}

// waitOnce waits for notifications until the connection fails; when idle
// for PingInterval it pings to detect a dead connection.
func (b *Broadcaster) waitOnce(ctx context.Context) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, b.cfg.PingInterval)
		ch, payload, err := b.listener.WaitForNotification(wctx)
		cancel()
		if err == nil {
			if b.echo(ch, payload) {
				continue
			}
			select {
			case b.buf <- notification{ch, payload}:
			default:
				// The fan-out goroutine is behind; dropping is safe only
				// because we then wake everyone, which loses nothing.
				b.WakeAll()
			}
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		err = b.listener.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// deliver fans buffered notifications out, separate from the socket reader
// so that fan-out never delays reading.
func (b *Broadcaster) deliver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-b.buf:
			b.Notify(n.channel, n.payload)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
