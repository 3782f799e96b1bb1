package feed

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/store"
)

// Config configures a [Hub].
type Config struct {
	Store       *store.Store
	Broadcaster *notify.Broadcaster
	Logger      *slog.Logger
	// PollInterval is the fallback poll of the log head; 0 means 1s.
	PollInterval time.Duration
	// RingEvents and RingBytes bound the tail cache; 0 means 16384 events
	// and 64 MiB.
	RingEvents int
	RingBytes  int64
	// PageSize is the number of events per catch-up query; 0 means 2000
	// (a page of ordinary events is then bounded by PageBytes: pages of
	// 2,000 against 1,000 events of 600 bytes cost PostgreSQL about 12 %
	// less CPU per event replayed; docs/PERFORMANCE.md, "At scale").
	PageSize int
	// PageBytes bounds the documents of one catch-up page, and the frames
	// one step of a subscriber takes from the ring; a page always holds at
	// least one event. 0 means DefaultPageBytes.
	PageBytes int64
	// CatchUpBytes bounds the documents that all subscribers reading
	// history from SQL hold at once (each holds the page it writes and the
	// one it reads ahead): a subscriber's pages get CatchUpBytes ÷ twice
	// the number of such subscribers, between MinPageBytes and PageBytes.
	// A lone replay keeps PageBytes pages; 2,000 clients that stop reading
	// cannot hold 2 MiB each. 0 means DefaultCatchUpBytes.
	CatchUpBytes int64
	// Keepalive is the interval of ": keepalive" comments on idle streams;
	// 0 means 15s.
	Keepalive time.Duration
	// WriteTimeout bounds one write to a client; a client that does not
	// read for this long is disconnected. 0 means 30s.
	WriteTimeout time.Duration
	// MaxClients caps concurrent streams; 0 means no cap.
	MaxClients int
	// ObserveFunc, when set, is told about delivered events (for metrics).
	ObserveFunc func(delivered int, lag time.Duration)
}

// DefaultPageBytes bounds the documents of a page a subscriber reads from
// the log: what one SSE client may hold while a slow reader takes it (see
// docs/RELIABILITY.md). It is the bound of a query page
// (store.DefaultPageBytes): at 256 KiB, a page of 600-byte events held 430
// of them, and the fixed costs of a page (a round trip, a plan, waking
// both processes) made a replay cost PostgreSQL 30 % more CPU per event
// than pages of 1,000 events (docs/PERFORMANCE.md, "At scale").
const DefaultPageBytes = 1 << 20

// DefaultCatchUpBytes is the default of Config.CatchUpBytes, and
// MinPageBytes the smallest page a subscriber is given (a page always
// holds at least one event, whatever its size).
const (
	DefaultCatchUpBytes = 64 << 20
	MinPageBytes        = 16 << 10
)

// frame is one event rendered once for every subscriber.
type frame struct {
	number int64
	stream string
	data   []byte // "id: N\ndata: {...}\n\n"
	commit time.Time
}

// Hub owns the tail of the log: it follows the head and caches the newest
// frames. All methods are safe for concurrent use.
type Hub struct {
	cfg    Config
	logger *slog.Logger

	mu      sync.RWMutex
	ring    []*frame // circular, len == cfg.RingEvents
	start   int      // index of the oldest frame
	count   int      // frames in the ring
	bytes   int64    // bytes held by the ring
	last    int64    // newest event number loaded; all events <= last are committed
	changed chan struct{}

	clients atomic.Int64
	// readers counts the subscribers that read history from SQL (see
	// Config.CatchUpBytes).
	readers atomic.Int64
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a Hub; call [Hub.Start].
func New(cfg Config) *Hub {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.RingEvents <= 0 {
		cfg.RingEvents = 16384
	}
	if cfg.RingBytes <= 0 {
		cfg.RingBytes = 64 << 20
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 2000
	}
	if cfg.PageBytes <= 0 {
		cfg.PageBytes = DefaultPageBytes
	}
	if cfg.CatchUpBytes <= 0 {
		cfg.CatchUpBytes = DefaultCatchUpBytes
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = 15 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		cfg:     cfg,
		logger:  cfg.Logger.With("component", "feed"),
		ring:    make([]*frame, cfg.RingEvents),
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Start loads the head and runs the tailer until [Hub.Stop].
func (h *Hub) Start(ctx context.Context) error {
	head, err := h.cfg.Store.Head(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.last = head
	h.mu.Unlock()
	ctx, h.cancel = context.WithCancel(ctx)
	go h.tail(ctx)
	return nil
}

// Stop ends the tailer.
func (h *Hub) Stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
	}
}

// Last returns the newest event number the hub has loaded.
func (h *Hub) Last() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.last
}

// Clients returns the number of open streams.
func (h *Hub) Clients() int64 { return h.clients.Load() }

// Cached returns how many frames the tail cache holds and their size in
// bytes; both stay within Config.RingEvents and Config.RingBytes.
func (h *Hub) Cached() (events int, bytes int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.count, h.bytes
}

// wait returns a channel closed when the tail next advances.
func (h *Hub) wait() <-chan struct{} {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.changed
}

func (h *Hub) tail(ctx context.Context) {
	defer close(h.done)
	events := h.cfg.Broadcaster.Subscribe(store.ChannelEvents)
	defer events.Close()
	replaced := h.cfg.Broadcaster.Subscribe(store.ChannelReplaced)
	defer replaced.Close()
	for {
		jitter := time.Duration(rand.Int64N(int64(h.cfg.PollInterval)/10 + 1))
		timer := time.NewTimer(h.cfg.PollInterval + jitter)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-events.C():
			if events.Newest() <= h.Last() {
				// Only notifications of commits the hub already follows:
				// the echo of this process's own, which [Hub.Publish]
				// has taken. Nothing to read.
				timer.Stop()
				continue
			}
		case <-replaced.C():
			// The cache may hold content that was just replaced; the old
			// content must not be served again. Drop the cache; readers
			// behind fall back to SQL.
			h.clear()
		case <-timer.C:
		}
		timer.Stop()
		if h.clients.Load() == 0 {
			// Nobody is streaming: rendering every new event would be wasted
			// work. Follow the head only; a stream that opens later reads
			// what it needs from SQL until the cache fills again.
			if err := h.skipToHead(ctx); err != nil && ctx.Err() == nil {
				h.logger.WarnContext(ctx, "head read failed; retrying on the next wake-up", "error", err)
			}
			continue
		}
		if err := h.catchUp(ctx); err != nil && ctx.Err() == nil {
			h.logger.WarnContext(ctx, "tail read failed; retrying on the next wake-up", "error", err)
		}
	}
}

// skipToHead moves h.last to the head without loading events, emptying the
// cache (which must stay contiguous).
func (h *Hub) skipToHead(ctx context.Context) error {
	head, err := h.cfg.Store.Head(ctx)
	if err != nil {
		return err
	}
	h.advance(head)
	return nil
}

// advance moves h.last to head, when that is ahead, without loading
// events, emptying the cache (which must stay contiguous).
func (h *Hub) advance(head int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if head <= h.last {
		return
	}
	h.dropAll()
	h.last = head
	close(h.changed)
	h.changed = make(chan struct{})
}

// catchUp loads every event committed after h.last into the ring.
func (h *Hub) catchUp(ctx context.Context) error {
	for {
		h.mu.RLock()
		after := h.last
		h.mu.RUnlock()
		events, err := h.cfg.Store.ReadLog(ctx, store.ReadLogParams{After: after, Limit: h.cfg.PageSize, MaxBytes: h.cfg.PageBytes, Tail: true})
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		full := store.PageFull(events, h.cfg.PageSize, h.cfg.PageBytes)
		frames := make([]*frame, len(events))
		for i, e := range events {
			frames[i] = newFrame(e, e.CommittedAt)
			events[i] = nil
		}
		h.push(frames)
		if !full {
			return nil
		}
	}
}

// newFrame renders e once for every subscriber; committed is its commit
// time, for the delivery-lag metric.
func newFrame(e *fossil.Event, committed time.Time) *frame {
	return &frame{number: e.Number, stream: e.Stream, data: appendFrame(nil, e), commit: committed}
}

// Publish hands the hub the events of a group this process has just
// committed (inserted, in number order), so that live streams get them
// without a read of the log. It reports whether it took them: when no
// stream is open (the hub then only moves to the new head, as its tailer
// would), or when the events directly follow the newest event the hub
// holds; otherwise the caller wakes the tailer, which reads them. When
// replaced is true, stored events were overwritten and the cache, which
// may hold their old content, is dropped first. Publish must be called
// before the writers of these events are answered, and events must not
// change afterwards.
func (h *Hub) Publish(events []*fossil.Event, replaced bool) bool {
	if replaced {
		h.clear()
	}
	if len(events) == 0 {
		return false
	}
	if h.clients.Load() == 0 {
		// Nobody is streaming: follow the head without rendering, as the
		// tailer would after a read of it. Every event up to the new head
		// is committed (commit order is number order).
		h.advance(events[len(events)-1].Number)
		return true
	}
	// Render outside the lock; the commit time is now, which makes the
	// delivery lag of these frames commit → write exactly.
	now := time.Now()
	frames := make([]*frame, len(events))
	for i, e := range events {
		frames[i] = newFrame(e, now)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if frames[0].number != h.last+1 {
		// Events of another process come first, or the tailer has
		// already loaded these.
		return false
	}
	h.pushLocked(frames)
	return true
}

// push appends frames read from the log after h.last and wakes waiters.
func (h *Hub) push(frames []*frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pushLocked(frames)
}

// pushLocked appends the frames that follow h.last without a gap (frames
// at or before h.last were published meanwhile and are skipped) and wakes
// waiters. The caller holds h.mu.
func (h *Hub) pushLocked(frames []*frame) {
	for _, f := range frames {
		if f.number <= h.last {
			continue
		}
		if f.number != h.last+1 {
			break // a gap: the tailer reads the rest from the log
		}
		for h.count > 0 && (h.count == len(h.ring) || h.bytes+int64(len(f.data)) > h.cfg.RingBytes) {
			old := h.ring[h.start]
			h.ring[h.start] = nil
			h.start = (h.start + 1) % len(h.ring)
			h.count--
			h.bytes -= int64(len(old.data))
		}
		h.ring[(h.start+h.count)%len(h.ring)] = f
		h.count++
		h.bytes += int64(len(f.data))
		h.last = f.number
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *Hub) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropAll()
}

func (h *Hub) dropAll() {
	for i := range h.count { // only the slots in use hold frames
		h.ring[(h.start+i)%len(h.ring)] = nil
	}
	h.start, h.count, h.bytes = 0, 0, 0
}

// fromRing returns up to max cached frames after cursor, stopping before a
// frame once those before it add up to maxBytes (the first is always
// returned), and whether the ring covers the cursor. When it does not, the
// caller reads SQL.
func (h *Hub) fromRing(cursor int64, max int, maxBytes int64) ([]*frame, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if cursor >= h.last {
		return nil, true // caught up (or ahead of this process)
	}
	if h.count == 0 {
		return nil, false
	}
	oldest := h.ring[h.start].number
	if cursor < oldest-1 {
		return nil, false
	}
	skip := int(cursor - oldest + 1)
	n := min(h.count-skip, max)
	out := make([]*frame, 0, min(n, 256))
	var size int64
	for i := 0; i < n && size < maxBytes; i++ {
		f := h.ring[(h.start+skip+i)%len(h.ring)]
		out = append(out, f)
		size += int64(len(f.data))
	}
	return out, true
}

// readerPageBytes is the bound on the documents of the next page a
// subscriber reads from SQL: its share of Config.CatchUpBytes among the
// subscribers doing so (two pages each), between MinPageBytes and
// Config.PageBytes.
func (h *Hub) readerPageBytes() int64 {
	n := max(h.readers.Load(), 1)
	return min(h.cfg.PageBytes, max(MinPageBytes, h.cfg.CatchUpBytes/(2*n)))
}
