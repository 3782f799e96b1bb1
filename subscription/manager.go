package subscription

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/store"
	"github.com/fossil-events/fossil/subscription/sink"
)

// Observer receives delivery facts for metrics. Every func is optional.
type Observer struct {
	// DeliveredFunc: one event delivered; latency is commit → delivery,
	// took the successful attempt's duration.
	DeliveredFunc func(id string, latency, took time.Duration)
	// FailureFunc: one attempt failed, for a reason such as "retry",
	// "throttled", "rejected" or "gone".
	FailureFunc func(id, reason string)
	// ParkedFunc: one event parked.
	ParkedFunc func(id string)
}

// Config wires a [Manager].
type Config struct {
	Store       *store.Store
	Broadcaster *notify.Broadcaster // wake-ups from other processes; nil in tests that call Wake
	Logger      *slog.Logger
	Observer    Observer
	// LeaseTTL is how long a dead process keeps its subscriptions; 0 means 5s.
	LeaseTTL time.Duration
	// ScanInterval is how often the subscription list is read (and every
	// dispatcher polls the log, in case a notification was lost); 0 means 1s.
	ScanInterval time.Duration
	// FlushInterval is the most often a dispatcher writes its state while
	// it changes; 0 means 100ms.
	FlushInterval time.Duration
	// PageSize is the number of events per read; 0 means 1000.
	PageSize int
	// MaxPending bounds the events a dispatcher holds; 0 means 10000.
	MaxPending int
	// Backoff is the retry policy; zero means [DefaultBackoff].
	Backoff Backoff
	// Origin is sent in WebHook-Request-Origin; empty means the host name.
	Origin string
	// HandshakeTimeout bounds the webhook handshake; 0 means 10s.
	HandshakeTimeout time.Duration
	// AdvertiseURL is how the other Fossil processes on the database reach
	// this one (http://host:port). It is kept with the leases this process
	// holds, so that a pull member or an ack arriving at another process
	// is forwarded here. Empty: they get 503 with Retry-After instead.
	AdvertiseURL string
}

// Manager runs the dispatchers of the subscriptions whose lease this
// process holds, and the member groups of pull subscriptions.
type Manager struct {
	cfg    Config
	logger *slog.Logger
	holder string

	mu      sync.Mutex
	running map[string]*dispatcher
	groups  map[string]*group // pull subscriptions served here

	rescan chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ctx    context.Context
}

// NewManager returns a Manager; [Manager.Start] runs it.
func NewManager(cfg Config) *Manager {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = time.Second
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 1000
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10000
	}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Origin == "" {
		cfg.Origin, _ = os.Hostname()
		if cfg.Origin == "" {
			cfg.Origin = "fossil"
		}
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		cfg:     cfg,
		logger:  cfg.Logger.With("component", "subscription"),
		holder:  newHolder(cfg.AdvertiseURL),
		running: map[string]*dispatcher{},
		groups:  map[string]*group{},
		rescan:  make(chan struct{}, 1),
	}
}

// newHolder returns this process's lease holder name: a random id, and the
// advertised URL after an "@" when there is one (see [holderURL]).
func newHolder(advertise string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	if advertise != "" {
		h += "@" + strings.TrimRight(advertise, "/")
	}
	return h
}

// Start runs the manager until [Manager.Stop].
func (m *Manager) Start(ctx context.Context) {
	m.ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.loop(m.ctx)
	}()
}

// Stop ends every dispatcher (each writes its state and releases its
// lease, so another process takes over at once) and waits for them.
func (m *Manager) Stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.wg.Wait()
}

// Wake tells every dispatcher that new events may have been committed. It
// never blocks; cmd calls it after each local commit.
func (m *Manager) Wake() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.running {
		poke(d.wake)
	}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Changed tells the manager that subscription id changed (cmd or the
// handlers call it after a local write; other processes learn it from the
// notification).
func (m *Manager) Changed(id string) {
	m.mu.Lock()
	if d := m.running[id]; d != nil {
		poke(d.changed)
	}
	m.mu.Unlock()
	poke(m.rescan)
}

func (m *Manager) loop(ctx context.Context) {
	var events, subs <-chan struct{}
	if b := m.cfg.Broadcaster; b != nil {
		es := b.Subscribe(store.ChannelEvents)
		defer es.Close()
		events = es.C()
		ss := b.Subscribe(store.ChannelSubscriptions)
		defer ss.Close()
		subs = ss.C()
	}
	tick := time.NewTicker(m.cfg.ScanInterval)
	defer tick.Stop()
	m.scan(ctx)
	for {
		select {
		case <-ctx.Done():
			m.stopAll()
			return
		case <-events:
			m.Wake()
		case <-subs:
			// A notification does not say which; let every dispatcher check.
			m.mu.Lock()
			for _, d := range m.running {
				poke(d.changed)
			}
			m.mu.Unlock()
			m.scan(ctx)
		case <-m.rescan:
			m.scan(ctx)
		case <-tick.C:
			m.Wake() // poll fallback
			m.scan(ctx)
		}
	}
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	ds := make([]*dispatcher, 0, len(m.running))
	for _, d := range m.running {
		ds = append(ds, d)
	}
	m.mu.Unlock()
	for _, d := range ds {
		<-d.done
	}
}

// scan starts a dispatcher for every active push subscription this process
// can lease, and forgets the dispatchers that ended.
func (m *Manager) scan(ctx context.Context) {
	m.mu.Lock()
	for id, d := range m.running {
		select {
		case <-d.done:
			delete(m.running, id)
		default:
		}
	}
	m.mu.Unlock()
	subs, err := m.cfg.Store.ListSubscriptions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.logger.WarnContext(ctx, "list subscriptions", "error", err)
		}
		return
	}
	for _, s := range subs {
		m.mu.Lock()
		_, busy := m.running[s.ID]
		m.mu.Unlock()
		if busy || s.State != "active" {
			continue
		}
		c, err := compileStored(s)
		if err != nil {
			m.logger.ErrorContext(ctx, "stored subscription does not compile", "subscription", s.ID, "error", err)
			continue
		}
		if c.Paused || c.Def.Protocol == ProtocolSSE {
			continue
		}
		ok, err := m.cfg.Store.AcquireSubscriptionLease(ctx, s.ID, m.holder, m.cfg.LeaseTTL)
		if err != nil || !ok {
			continue
		}
		snk, err := m.newSink(c, s.ID)
		if err != nil {
			m.logger.ErrorContext(ctx, "subscription sink", "subscription", s.ID, "error", err)
			_ = m.cfg.Store.ReleaseSubscriptionLease(ctx, s.ID, m.holder)
			continue
		}
		m.start(ctx, s, c, snk, nil)
	}
}

// start runs a dispatcher for s; the caller holds its lease.
func (m *Manager) start(ctx context.Context, s *store.Subscription, c *Compiled, snk sink.Sink, stop chan struct{}) *dispatcher {
	if stop == nil {
		stop = make(chan struct{})
	}
	d := &dispatcher{
		m: m, id: s.ID, holder: m.holder, gen: s.Generation, c: c, sink: snk,
		logger:    m.logger.With("subscription", s.ID),
		wake:      make(chan struct{}, 1),
		changed:   make(chan struct{}, 1),
		stop:      stop,
		done:      make(chan struct{}),
		pending:   map[int64]*item{},
		queues:    map[string]*queue{},
		results:   make(chan result, c.MaxInFlight),
		replaying: map[int64]bool{},
	}
	m.mu.Lock()
	m.running[s.ID] = d
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		d.run(ctx)
		poke(m.rescan)
	}()
	d.logger.InfoContext(ctx, "delivering subscription", "protocol", c.Def.Protocol, "position", s.Position)
	return d
}

// compileStored compiles a stored definition.
func compileStored(s *store.Subscription) (*Compiled, error) {
	var d Definition
	if err := json.Unmarshal(s.Definition, &d); err != nil {
		return nil, err
	}
	c, err := Compile(d)
	if err != nil {
		return nil, err
	}
	if len(s.Credential) > 0 {
		c.Credential = &Credential{}
		if err := json.Unmarshal(s.Credential, c.Credential); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// newSink builds the sink of a push subscription.
func (m *Manager) newSink(c *Compiled, id string) (sink.Sink, error) {
	switch c.Def.Protocol {
	case ProtocolHTTP:
		cfg := sink.HTTPConfig{URL: c.Def.Sink, Method: c.Method, Headers: c.Headers, Timeout: c.AckTimeout, MaxConns: c.MaxInFlight}
		if cr := c.Credential; cr != nil {
			cfg.Bearer = cr.AccessToken
			if cr.Type == "PLAIN" {
				cfg.User, cfg.Password = cr.Identity, cr.Secret
			}
		}
		return sink.NewHTTP(cfg), nil
	case ProtocolNATS:
		u, err := url.Parse(c.Def.Sink)
		if err != nil {
			return nil, err
		}
		cfg := sink.NATSConfig{URL: "nats://" + u.Host, Subject: c.Subject, Name: "fossil subscription " + id}
		if cr := c.Credential; cr != nil {
			cfg.Token = cr.AccessToken
			if cr.Type == "PLAIN" {
				cfg.User, cfg.Password = cr.Identity, cr.Secret
			}
		}
		return sink.NewNATS(cfg), nil
	case ProtocolKafka:
		u, err := url.Parse(c.Def.Sink)
		if err != nil {
			return nil, err
		}
		clientID, _ := c.Def.ProtocolSettings["clientid"].(string)
		return sink.NewKafka(sink.KafkaConfig{Brokers: []string{u.Host}, Topic: c.Topic, ClientID: clientID}), nil
	}
	return nil, fmt.Errorf("protocol %s has no push sink", c.Def.Protocol)
}

// handshake validates an HTTP sink on create and when the sink changes.
func (m *Manager) handshake(ctx context.Context, c *Compiled) error {
	if c.Def.Protocol != ProtocolHTTP || !c.Handshake {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.HandshakeTimeout)
	defer cancel()
	client := sink.NewHTTPClient(m.cfg.HandshakeTimeout, 1)
	defer client.CloseIdleConnections()
	if err := sink.Handshake(ctx, client, c.Def.Sink, m.cfg.Origin); err != nil {
		return fossil.Invalid("sink", "%s (set config.handshake to \"off\" to skip it)", err.Error())
	}
	return nil
}

// Status is the read-only status object of a subscription.
type Status struct {
	State     string  `json:"state"`
	Position  int64   `json:"position"`
	Lag       int64   `json:"lag"`
	Delivered int64   `json:"delivered"`
	Parked    int64   `json:"parked"`
	LastError *string `json:"lasterror"`
}

// ErrServedElsewhere: a pull subscription's members must connect to the
// process that holds its lease.
var ErrServedElsewhere = fmt.Errorf("%w: this subscription is delivered by another Fossil process; retry (a load balancer may send you there)", fossil.ErrUnavailable)

// newID returns a subscription id: 26 lower-case base32 characters.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	out := make([]byte, 0, 26)
	var acc uint64
	bits := 0
	for _, x := range b {
		acc = acc<<8 | uint64(x)
		bits += 8
		for bits >= 5 {
			out = append(out, alphabet[(acc>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		out = append(out, alphabet[(acc<<(5-bits))&31])
	}
	return string(out)
}
