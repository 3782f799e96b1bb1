// Package loadgen is `fossil bench`: a load generator for one Fossil server.
//
// A run has up to four parts, all against the one base URL it is given:
//
//   - Writers: Config.Clients goroutines POST events to /collect, one event
//     per request in binary mode (ce-* headers, the body is the data) or
//     Config.Batch events per request in batched mode
//     (application/cloudevents-batch+json), to one hot stream or to many,
//     optionally with Fossil-Expected-Sequence-Number, optionally capped at
//     Config.Rate events per second. The latency of each request is recorded.
//   - Live subscribers: Config.Subscribers /sse streams on the run's streams.
//     Each event's data carries "sent_ns", the wall-clock time its writer
//     took just before sending the POST; a subscriber records receive time −
//     sent_ns for every event. That is the delivery latency a producer sees
//     (POST → commit → NOTIFY → SSE write → read), an upper bound of
//     commit → delivery that includes the append's own latency. The POST's
//     return time is of no use here: a subscriber often receives the event
//     before the writer has read its 200. Writers and subscribers share this
//     machine's clock, so no clock skew enters.
//   - Idle subscribers: Config.IdleSubscribers /sse streams on a stream no
//     one writes to, held open for the whole run, to measure what holding
//     them costs the server (Config.RSSPid samples its VmRSS).
//   - Replay: after the writers stop, one /sse stream on {+all} from event 0
//     reads the log up to its head (or Config.ReplayLimit events) as fast as
//     it can.
//
// The run stops at Config.Duration or after Config.Events events, whichever
// comes first. Only the given URL is ever contacted, and unless
// Config.AllowRemote is set every connection is refused unless it goes to a
// loopback address.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrRemoteTarget is returned for a URL that is not on this machine while
// Config.AllowRemote is false.
var ErrRemoteTarget = errors.New("refusing a non-loopback target (pass --allow-remote to load-test another machine)")

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid bench configuration")

// Config describes one run. The zero value of each field means "off" or the
// default documented on it.
type Config struct {
	// URL is the server's base URL, such as http://127.0.0.1:8080.
	URL string
	// AllowRemote permits a target outside 127.0.0.0/8 and ::1.
	AllowRemote bool

	// Clients is the number of concurrent writers; 0 writes nothing.
	Clients int
	// Batch is the number of events per POST; 1 (or 0) posts single events
	// in binary mode, more posts a batch.
	Batch int
	// DataBytes is the approximate size of each event's JSON data; 0 means 500.
	DataBytes int
	// Streams is the number of streams written to; 1 is one hot stream, 0
	// means 1000.
	Streams int
	// ExpectSequence sends Fossil-Expected-Sequence-Number with every POST.
	// Writers own their streams when Streams ≥ Clients; with fewer streams
	// than writers they race, and the 409s are reported as errors.
	ExpectSequence bool
	// Rate caps the events per second of all writers together; 0 is no cap.
	Rate float64
	// Protocol is how writers append: ProtocolHTTP (the default) posts to
	// /collect; ProtocolGRPC streams requests over one CollectStream call
	// per writer, each writer on an HTTP/2 connection of its own, with at
	// most Pipeline requests sent ahead of their answers.
	Protocol string
	// Pipeline bounds a gRPC writer's requests in flight; 0 means 256.
	Pipeline int

	// Duration bounds the run; 0 means 10s unless Events is set.
	Duration time.Duration
	// Events stops the writers after this many events; 0 is no limit.
	Events int64

	// Subscribers is the number of live /sse streams measuring delivery.
	Subscribers int
	// SubscribeTemplate is the stream template of the live subscribers, in
	// which "{run}" stands for RunID; empty means "bench/{run}/{s}" (every
	// stream of the run). "bench/{run}/s0" with Streams 1 is a literal
	// template, which the server matches without the RFC 6570 matcher.
	SubscribeTemplate string
	// IdleSubscribers is the number of /sse streams held open on a stream
	// that gets no events.
	IdleSubscribers int
	// RSSPid, when set, is the pid of a server on this machine whose VmRSS
	// is sampled before and after the idle subscribers connect.
	RSSPid int

	// Replay runs the catch-up phase after the writers stop.
	Replay bool
	// ReplayLimit stops the replay after this many events; 0 reads up to
	// the head.
	ReplayLimit int64
	// ReplayProtocol is how the replay reads: ProtocolHTTP (the default)
	// over /sse, ProtocolGRPC with Subscribe.
	ReplayProtocol string

	// RunID names this run's streams (bench/<RunID>/s<N>); empty picks a
	// random one.
	RunID string
	// Progress, when set, receives a progress line every second, rewriting
	// one terminal line with "\r" unless ProgressPlain is set, in which case
	// every fifth second gets a line of its own (for logs).
	Progress      io.Writer
	ProgressPlain bool
}

// Defaults fills in the defaults Run would (a random RunID among them) and
// checks the configuration, so a caller can say what a run will do.
func (c *Config) Defaults() error { return c.setDefaults() }

func (c *Config) setDefaults() error {
	if c.URL == "" {
		c.URL = "http://127.0.0.1:8080"
	}
	if c.Batch <= 0 {
		c.Batch = 1
	}
	if c.DataBytes <= 0 {
		c.DataBytes = 500
	}
	if c.Streams <= 0 {
		c.Streams = 1000
	}
	if c.Duration <= 0 && c.Events <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolHTTP
	}
	if c.ReplayProtocol == "" {
		c.ReplayProtocol = ProtocolHTTP
	}
	if c.Pipeline <= 0 {
		c.Pipeline = 256
	}
	if c.RunID == "" {
		c.RunID = strconv.FormatUint(rand.Uint64()&0xffffffffff, 36)
	}
	switch {
	case c.Clients < 0 || c.Subscribers < 0 || c.IdleSubscribers < 0:
		return fmt.Errorf("%w: counts must not be negative", ErrInvalidConfig)
	case c.Batch > 10000:
		return fmt.Errorf("%w: batch must be at most 10000 events", ErrInvalidConfig)
	case c.Protocol != ProtocolHTTP && c.Protocol != ProtocolGRPC:
		return fmt.Errorf("%w: protocol must be %s or %s", ErrInvalidConfig, ProtocolHTTP, ProtocolGRPC)
	case c.ReplayProtocol != ProtocolHTTP && c.ReplayProtocol != ProtocolGRPC:
		return fmt.Errorf("%w: replay protocol must be %s or %s", ErrInvalidConfig, ProtocolHTTP, ProtocolGRPC)
	case c.Rate < 0:
		return fmt.Errorf("%w: rate must not be negative", ErrInvalidConfig)
	case c.Clients == 0 && c.Subscribers > 0:
		return fmt.Errorf("%w: live subscribers need writers (clients > 0)", ErrInvalidConfig)
	}
	return nil
}

// CheckTarget parses a base URL and refuses one whose host is not a
// loopback address or "localhost", unless allowRemote.
func CheckTarget(raw string, allowRemote bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %w", ErrInvalidConfig, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: url %q must start with http:// or https://", ErrInvalidConfig, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: url %q has no host", ErrInvalidConfig, raw)
	}
	if !allowRemote && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("%s: %w", u.Host, ErrRemoteTarget)
	}
	return u, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Result is what a run measured. Latencies are in milliseconds.
type Result struct {
	URL             string  `json:"url"`
	RunID           string  `json:"run_id"`
	Clients         int     `json:"clients"`
	Batch           int     `json:"batch"`
	Protocol        string  `json:"protocol"`
	Pipeline        int     `json:"pipeline,omitempty"`
	Streams         int     `json:"streams"`
	DataBytes       int     `json:"data_bytes"`
	ExpectSequence  bool    `json:"expect_sequence"`
	Rate            float64 `json:"rate,omitempty"`
	Subscribers     int     `json:"subscribers"`
	IdleSubscribers int     `json:"idle_subscribers"`

	// Seconds is the length of the write phase.
	Seconds float64 `json:"seconds"`
	// Requests and Events count successful POSTs and the events they held.
	Requests          int64   `json:"requests"`
	Events            int64   `json:"events"`
	Duplicates        int64   `json:"duplicates"`
	EventsPerSecond   float64 `json:"events_per_second"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Append is the latency of successful POSTs.
	Append Latency `json:"append_latency"`

	// Delivered counts events received by live subscribers; Delivery is
	// send (sent_ns in the data) → receive.
	Delivered             int64   `json:"delivered"`
	DeliveryExpected      int64   `json:"delivery_expected"`
	Delivery              Latency `json:"delivery_latency"`
	SubscribersEndedEarly int64   `json:"subscribers_ended_early"`

	Replay *ReplayResult `json:"replay,omitempty"`
	Idle   *IdleResult   `json:"idle,omitempty"`

	// Errors counts failed requests by HTTP status ("409", "503") or
	// "transport"; FirstError describes the first one.
	Errors     map[string]int64 `json:"errors"`
	FirstError string           `json:"first_error,omitempty"`
}

// ReplayResult is the catch-up phase.
type ReplayResult struct {
	Events          int64   `json:"events"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	// Head is the event number the replay read up to.
	Head int64 `json:"head"`
}

// IdleResult is the idle-subscriber phase.
type IdleResult struct {
	Open    int     `json:"open"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"connect_seconds"`
	// RSS of Config.RSSPid before the idle subscribers connected, once all
	// were open, and at the end of the run (bytes; 0 when not sampled).
	RSSBefore int64 `json:"server_rss_before_bytes,omitempty"`
	RSSOpen   int64 `json:"server_rss_open_bytes,omitempty"`
	RSSEnd    int64 `json:"server_rss_end_bytes,omitempty"`
}

// ErrorCount returns the number of failed requests.
func (r *Result) ErrorCount() int64 {
	var n int64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// bench is one run in progress.
type bench struct {
	cfg  Config
	base string // URL without a trailing slash
	post *http.Client
	sse  *http.Client

	limiter *limiter

	issued    atomic.Int64 // events handed to writers (for Config.Events)
	events    atomic.Int64 // committed events (incl. duplicates)
	requests  atomic.Int64
	dups      atomic.Int64
	delivered atomic.Int64

	errMu    sync.Mutex
	errs     map[string]int64
	firstErr string
}

// Run performs one run and returns its measurements. A run that could not
// start (bad config, server unreachable) returns an error; failed requests
// during the run are counted in Result.Errors instead.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if _, err := CheckTarget(cfg.URL, cfg.AllowRemote); err != nil {
		return nil, err
	}
	b := &bench{
		cfg:  cfg,
		base: strings.TrimRight(cfg.URL, "/"),
		errs: map[string]int64{},
	}
	b.post = &http.Client{Transport: newTransport(cfg, max(cfg.Clients, 1)*2)}
	b.sse = &http.Client{Transport: newTransport(cfg, 0)}
	defer b.post.CloseIdleConnections()
	defer b.sse.CloseIdleConnections()
	if cfg.Rate > 0 {
		b.limiter = newLimiter(cfg.Rate)
	}

	if err := b.ping(ctx); err != nil {
		return nil, err
	}
	res := &Result{
		URL: cfg.URL, RunID: cfg.RunID, Clients: cfg.Clients, Batch: cfg.Batch, Protocol: cfg.Protocol, Streams: cfg.Streams,
		DataBytes: cfg.DataBytes, ExpectSequence: cfg.ExpectSequence, Rate: cfg.Rate,
		Subscribers: cfg.Subscribers, IdleSubscribers: cfg.IdleSubscribers,
	}
	if cfg.Protocol == ProtocolGRPC {
		res.Pipeline = cfg.Pipeline
	}

	// Subscribers start after the current head so they see only this run.
	var head int64
	if cfg.Subscribers > 0 || cfg.IdleSubscribers > 0 {
		h, err := b.head(ctx)
		if err != nil {
			return nil, err
		}
		head = h
	}

	streamsCtx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var streamsWG sync.WaitGroup

	if cfg.IdleSubscribers > 0 {
		res.Idle = b.openIdle(streamsCtx, &streamsWG, head)
	}

	subs := make([]*subscriber, cfg.Subscribers)
	for i := range subs {
		tmpl := cfg.SubscribeTemplate
		if tmpl == "" {
			tmpl = "bench/{run}/{s}"
		}
		s, err := b.openSubscriber(streamsCtx, strings.ReplaceAll(tmpl, "{run}", cfg.RunID), head)
		if err != nil {
			return nil, fmt.Errorf("open live subscriber %d: %w", i, err)
		}
		subs[i] = s
		streamsWG.Add(1)
		go func() {
			defer streamsWG.Done()
			s.run(&b.delivered)
		}()
	}

	// The write phase (or, without writers, the hold of the idle streams).
	progressDone := make(chan struct{})
	start := time.Now()
	progressStopped := b.progress(start, progressDone)
	hists := b.write(ctx)
	elapsed := time.Since(start)
	close(progressDone)
	<-progressStopped

	total := &histogram{}
	for _, h := range hists {
		total.merge(h)
	}
	res.Seconds = elapsed.Seconds()
	res.Requests = b.requests.Load()
	res.Events = b.events.Load()
	res.Duplicates = b.dups.Load()
	if res.Seconds > 0 {
		res.EventsPerSecond = float64(res.Events) / res.Seconds
		res.RequestsPerSecond = float64(res.Requests) / res.Seconds
	}
	res.Append = total.summary()

	// Let the live subscribers catch up with what was written, then stop.
	if len(subs) > 0 {
		want := (res.Events - res.Duplicates) * int64(len(subs))
		res.DeliveryExpected = want
		deadline := time.Now().Add(15 * time.Second)
		for b.delivered.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if res.Idle != nil && cfg.RSSPid > 0 {
		res.Idle.RSSEnd = readRSS(cfg.RSSPid)
	}
	stopStreams()
	streamsWG.Wait()
	dh := &histogram{}
	for _, s := range subs {
		dh.merge(&s.hist)
		if s.endedEarly.Load() {
			res.SubscribersEndedEarly++
		}
	}
	res.Delivered = b.delivered.Load()
	res.Delivery = dh.summary()

	if cfg.Replay && ctx.Err() == nil {
		r, err := b.replay(ctx)
		if err != nil {
			b.fail("replay", err.Error())
		} else {
			res.Replay = r
		}
	}
	res.Errors = b.errs
	res.FirstError = b.firstErr
	return res, ctx.Err()
}

// newTransport returns a transport for one kind of traffic. It dials only
// loopback addresses unless AllowRemote, whatever the name resolves to.
func newTransport(cfg Config, idle int) *http.Transport {
	dialer := newDialer(cfg)
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 60 * time.Second,
		ForceAttemptHTTP2:     false,
	}
	if idle == 0 { // SSE: one long response per connection, never reused
		t.DisableKeepAlives = true
		t.ReadBufferSize = 64 << 10
	}
	return t
}

// newDialer returns the dialer of every connection of a run: it refuses
// addresses that are not loopback unless cfg.AllowRemote is set.
func newDialer(cfg Config) *net.Dialer {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !cfg.AllowRemote {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("dial %s: %w", address, ErrRemoteTarget)
			}
			return nil
		}
	}
	return dialer
}

func (b *bench) fail(key, msg string) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	b.errs[key]++
	if b.firstErr == "" {
		b.firstErr = msg
	}
}

func (b *bench) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := b.post.Do(req)
	if err != nil {
		return fmt.Errorf("server not reachable: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("server not healthy: GET /healthz answered %d", resp.StatusCode)
	}
	return nil
}

// head finds the newest event number of the server under test.
func (b *bench) head(ctx context.Context) (int64, error) {
	return Head(ctx, b.post, b.base)
}

// Head finds the newest event number of the Fossil at base with
// GET /events/{n}: event numbers are dense, so an exponential probe and a
// binary search find it in 2·log2(head) requests.
func Head(ctx context.Context, client *http.Client, base string) (int64, error) {
	exists := func(n int64) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events/"+strconv.FormatInt(n, 10), nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return true, nil
		case http.StatusNotFound:
			return false, nil
		default:
			return false, fmt.Errorf("find the head: GET /events/%d answered %d", n, resp.StatusCode)
		}
	}
	lo, hi := int64(0), int64(1) // event lo exists (0: none), hi is unknown
	for {
		ok, err := exists(hi)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 { // lo exists, hi does not
		mid := lo + (hi-lo)/2
		ok, err := exists(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// limiter spaces events evenly at a rate shared by all writers.
type limiter struct {
	mu       sync.Mutex
	next     time.Time
	perEvent time.Duration
}

func newLimiter(rate float64) *limiter {
	return &limiter{perEvent: time.Duration(float64(time.Second) / rate)}
}

// wait blocks until n more events may be sent. A writer that fell behind
// does not get a burst to catch up: the schedule restarts from now.
func (l *limiter) wait(ctx context.Context, n int) {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(time.Duration(n) * l.perEvent)
	l.mu.Unlock()
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// write runs the writers until the duration or the event budget is spent
// and returns their latency histograms. Without writers it holds the idle
// subscribers open for the duration, or returns at once when there are none
// (a replay-only run).
func (b *bench) write(ctx context.Context) []*histogram {
	stopAt := time.Time{}
	if b.cfg.Duration > 0 {
		stopAt = time.Now().Add(b.cfg.Duration)
	}
	if b.cfg.Clients == 0 {
		if b.cfg.IdleSubscribers > 0 && !stopAt.IsZero() {
			t := time.NewTimer(time.Until(stopAt))
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		return nil
	}
	hists := make([]*histogram, b.cfg.Clients)
	var wg sync.WaitGroup
	for i := range hists {
		hists[i] = &histogram{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWriter(b, i, hists[i])
			defer w.poster.close()
			if b.cfg.Protocol == ProtocolGRPC {
				(&rpcWriter{writer: w, client: b.rpcClient()}).run(ctx, stopAt)
				return
			}
			w.run(ctx, stopAt)
		}()
	}
	wg.Wait()
	return hists
}

// progress prints a line every second until done is closed; the returned
// channel is closed once it has printed its last line.
func (b *bench) progress(start time.Time, done <-chan struct{}) <-chan struct{} {
	stopped := make(chan struct{})
	if b.cfg.Progress == nil {
		close(stopped)
		return stopped
	}
	var lastEvents int64
	last := start
	line := func(now time.Time) string {
		ev := b.events.Load()
		rate := float64(ev-lastEvents) / max(now.Sub(last).Seconds(), 1e-3)
		lastEvents, last = ev, now
		b.errMu.Lock()
		var errs int64
		for _, c := range b.errs {
			errs += c
		}
		b.errMu.Unlock()
		l := fmt.Sprintf("bench %5.0fs  events %10d  %8.0f ev/s  errors %d", now.Sub(start).Seconds(), ev, rate, errs)
		if b.cfg.Subscribers > 0 {
			l += fmt.Sprintf("  delivered %d", b.delivered.Load())
		}
		return l
	}
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		printed := false
		for {
			select {
			case <-done:
				switch {
				case b.cfg.ProgressPlain:
					fmt.Fprintln(b.cfg.Progress, line(time.Now())+"  (done)")
				case printed:
					fmt.Fprintln(b.cfg.Progress)
				}
				return
			case now := <-tick.C:
				secs := int(now.Sub(start).Round(time.Second).Seconds())
				switch {
				case !b.cfg.ProgressPlain:
					fmt.Fprint(b.cfg.Progress, "\r"+line(now)+"   ")
					printed = true
				case secs%5 == 0:
					fmt.Fprintln(b.cfg.Progress, line(now))
				}
			}
		}
	}()
	return stopped
}

// writer is one client posting events.
type writer struct {
	b       *bench
	poster  poster
	id      int
	hist    *histogram
	pad     string
	body    []byte
	headers []header
	seqs    map[int]int64 // stream index → next expected sequence
	prefix  string
}

func newWriter(b *bench, id int, h *histogram) *writer {
	// {"sent_ns":1234567890123456789,"writer":12,"pad":"…"} is about 55
	// bytes plus the pad.
	padLen := max(b.cfg.DataBytes-56, 0)
	pad := make([]byte, padLen)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	return &writer{
		b: b, poster: b.newPoster(), id: id, hist: h, pad: string(pad), seqs: map[int]int64{},
		prefix: "bench/" + b.cfg.RunID + "/s",
	}
}

func (w *writer) run(ctx context.Context, stopAt time.Time) {
	cfg := w.b.cfg
	perWriter := max(1, cfg.Streams/cfg.Clients)
	for k := 0; ctx.Err() == nil; k++ {
		if !stopAt.IsZero() && !time.Now().Before(stopAt) {
			return
		}
		n := cfg.Batch
		if cfg.Events > 0 && w.b.issued.Add(int64(n)) > cfg.Events {
			return
		}
		if w.b.limiter != nil {
			w.b.limiter.wait(ctx, n)
			if ctx.Err() != nil {
				return
			}
		}
		var stream int
		if cfg.Streams >= cfg.Clients {
			stream = (w.id + cfg.Clients*(k%perWriter)) % cfg.Streams
		} else {
			stream = (w.id + k) % cfg.Streams
		}
		w.post(ctx, stream, k, n)
	}
}

// appendData appends one event's JSON data, stamped with the time now.
func (w *writer) appendData(b []byte) []byte {
	b = append(b, `{"sent_ns":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"writer":`...)
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, `,"pad":"`...)
	b = append(b, w.pad...)
	return append(b, `"}`...)
}

func (w *writer) eventID(k, j int) string {
	return w.b.cfg.RunID + "-" + strconv.Itoa(w.id) + "-" + strconv.Itoa(k) + "-" + strconv.Itoa(j)
}

func (w *writer) post(ctx context.Context, stream, k, n int) {
	cfg := w.b.cfg
	w.body = w.body[:0]
	hd := append(w.headers[:0], header{"Fossil-Stream", w.prefix + strconv.Itoa(stream)})
	if n == 1 {
		hd = append(hd,
			header{"Content-Type", "application/json"},
			header{"Ce-Specversion", "1.0"},
			header{"Ce-Id", w.eventID(k, 0)},
			header{"Ce-Source", "/fossil-bench"},
			header{"Ce-Type", "bench.event"})
		w.body = w.appendData(w.body)
	} else {
		hd = append(hd, header{"Content-Type", "application/cloudevents-batch+json"})
		w.body = append(w.body, '[')
		for j := range n {
			if j > 0 {
				w.body = append(w.body, ',')
			}
			w.body = append(w.body, `{"specversion":"1.0","id":"`...)
			w.body = append(w.body, w.eventID(k, j)...)
			w.body = append(w.body, `","source":"/fossil-bench","type":"bench.event","datacontenttype":"application/json","data":`...)
			w.body = w.appendData(w.body)
			w.body = append(w.body, '}')
		}
		w.body = append(w.body, ']')
	}
	if cfg.ExpectSequence {
		next, ok := w.seqs[stream]
		if !ok {
			next = 1 // the run's streams are new
		}
		hd = append(hd, header{"Fossil-Expected-Sequence-Number", strconv.FormatInt(next, 10)})
	}
	w.headers = hd
	start := time.Now()
	resp, err := w.poster.post(ctx, hd, w.body)
	if err != nil {
		if ctx.Err() == nil {
			w.b.fail("transport", err.Error())
		}
		return
	}
	took := time.Since(start)
	if resp.status != http.StatusOK {
		w.b.fail(strconv.Itoa(resp.status), fmt.Sprintf("POST /collect: %d: %s", resp.status, bytes.TrimSpace(resp.body)))
		if resp.status == http.StatusConflict && cfg.ExpectSequence {
			var p struct {
				Current *int64 `json:"current_sequence"`
			}
			if json.Unmarshal(resp.body, &p) == nil && p.Current != nil {
				w.seqs[stream] = *p.Current + 1
			}
		}
		return
	}
	w.hist.record(took)
	w.b.requests.Add(1)
	w.b.events.Add(int64(n))
	if resp.header.Get("Fossil-Duplicate") == "true" {
		w.b.dups.Add(int64(n))
	}
	if seq, err := strconv.ParseInt(resp.header.Get("Fossil-Sequence-Number"), 10, 64); err == nil {
		w.seqs[stream] = seq + 1
	}
}

// subscriber is one live /sse stream measuring delivery latency.
type subscriber struct {
	body       io.ReadCloser
	hist       histogram
	endedEarly atomic.Bool
	ctx        context.Context
}

// openSubscriber opens /sse?stream=template after cursor and waits for the
// response headers.
func (b *bench) openSubscriber(ctx context.Context, template string, after int64) (*subscriber, error) {
	body, err := b.openSSE(ctx, template, after)
	if err != nil {
		return nil, err
	}
	return &subscriber{body: body, ctx: ctx}, nil
}

func (b *bench) openSSE(ctx context.Context, template string, after int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/sse?stream="+url.QueryEscape(template), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-Id", strconv.FormatInt(after, 10))
	}
	resp, err := b.sse.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("GET /sse: %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return resp.Body, nil
}

var (
	// sentKey is searched for from its rarest byte: '_' occurs nowhere
	// else in the bench's documents, while a search that starts at '"'
	// stops at every quote of the JSON.
	sentKey    = []byte(`_ns":`)
	sentPrefix = []byte(`"sent`)
	frameEnd   = []byte("\n\n")
)

// run reads the stream until it ends, recording receive − sent_ns for each
// event and counting deliveries. It scans what each read returns for the
// sent_ns stamps of the complete frames in it instead of parsing lines: at
// 100 subscribers the load generator reads hundreds of thousands of frames
// a second on the cores the server needs. Every frame of a read was
// received at the moment the read returned.
func (s *subscriber) run(delivered *atomic.Int64) {
	defer s.body.Close()
	buf := make([]byte, 256<<10)
	held := 0 // bytes of an incomplete frame kept from the previous read
	for {
		if held == len(buf) {
			held = 0 // a frame longer than the buffer: not one of ours
		}
		n, err := s.body.Read(buf[held:])
		if n > 0 {
			now := time.Now().UnixNano()
			data := buf[:held+n]
			end := bytes.LastIndex(data, frameEnd)
			if end < 0 {
				held += n
			} else {
				s.count(data[:end], now, delivered)
				held = copy(buf, data[end+len(frameEnd):])
			}
		}
		if err != nil {
			if s.ctx.Err() == nil {
				s.endedEarly.Store(true)
			}
			return
		}
	}
}

// count records the sent_ns stamp of each event in complete frames.
func (s *subscriber) count(frames []byte, now int64, delivered *atomic.Int64) {
	events := int64(0)
	for {
		i := bytes.Index(frames, sentKey)
		if i < 0 {
			break
		}
		named := i >= len(sentPrefix) && bytes.Equal(frames[i-len(sentPrefix):i], sentPrefix)
		frames = frames[i+len(sentKey):]
		if !named {
			continue
		}
		sent, j := int64(0), 0
		for j < len(frames) && frames[j] >= '0' && frames[j] <= '9' {
			sent = sent*10 + int64(frames[j]-'0')
			j++
		}
		if j == 0 {
			continue
		}
		s.hist.record(time.Duration(now - sent))
		events++
	}
	delivered.Add(events)
}

// openIdle opens the idle subscribers, 64 at a time, and keeps each one
// draining its stream until ctx ends.
func (b *bench) openIdle(ctx context.Context, wg *sync.WaitGroup, after int64) *IdleResult {
	res := &IdleResult{}
	if b.cfg.RSSPid > 0 {
		res.RSSBefore = readRSS(b.cfg.RSSPid)
	}
	start := time.Now()
	template := "bench/" + b.cfg.RunID + "/idle"
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var opening sync.WaitGroup
	for i := 0; i < b.cfg.IdleSubscribers && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		opening.Add(1)
		go func() {
			defer opening.Done()
			body, err := b.openSSE(ctx, template, after)
			<-sem
			mu.Lock()
			if err != nil {
				res.Failed++
				mu.Unlock()
				b.fail("idle", err.Error())
				return
			}
			res.Open++
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer body.Close()
				_, _ = io.Copy(io.Discard, body)
			}()
		}()
	}
	opening.Wait()
	res.Seconds = time.Since(start).Seconds()
	if b.cfg.RSSPid > 0 {
		time.Sleep(500 * time.Millisecond) // let the server settle
		res.RSSOpen = readRSS(b.cfg.RSSPid)
	}
	if b.cfg.Progress != nil {
		fmt.Fprintf(b.cfg.Progress, "bench: %d idle subscribers open (%d failed) in %.1fs\n", res.Open, res.Failed, res.Seconds)
	}
	return res
}

// replay reads the whole log over /sse?stream={+all} from event 0 up to
// the head (or ReplayLimit events) and times it.
func (b *bench) replay(ctx context.Context) (*ReplayResult, error) {
	head, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	target := head
	if b.cfg.ReplayLimit > 0 {
		target = min(head, b.cfg.ReplayLimit)
	}
	res := &ReplayResult{Head: target}
	if target == 0 {
		return res, nil
	}
	if b.cfg.ReplayProtocol == ProtocolGRPC {
		return b.replayRPC(ctx, target)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	body, err := b.openSSE(ctx, "{+all}", 0)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	r := bufio.NewReaderSize(body, 256<<10)
	var count int64
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("replay ended after %d events: %w", count, err)
		}
		if !bytes.HasPrefix(line, []byte("id: ")) {
			continue
		}
		count++
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line[4:])), 10, 64)
		if err == nil && n >= target {
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.Events = count
	if res.Seconds > 0 {
		res.EventsPerSecond = float64(count) / res.Seconds
	}
	return res, nil
}

// readRSS returns VmRSS of pid from /proc in bytes, 0 when unavailable.
func readRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}
