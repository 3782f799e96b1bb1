package console

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

// Defaults of [StatsConfig].
const (
	DefaultSampleInterval = 5 * time.Second
	DefaultHistory        = 10 * time.Minute
	// streamCountTTL is how long a stream count is served before it is
	// read again: counting reads the whole stream table.
	streamCountTTL = 5 * time.Second
	// MaxSampledConsumers bounds the consumers whose offsets a sample
	// keeps (the first by name).
	MaxSampledConsumers = 1000
	// consumersTimeout bounds the read of the consumers' offsets.
	consumersTimeout = 2 * time.Second
)

// StatsConfig configures [Stats].
type StatsConfig struct {
	// HeadFunc returns the newest committed event number (the hub's,
	// which follows every process's commits).
	HeadFunc func() int64
	// CountStreamsFunc counts the streams (store.CountStreams).
	CountStreamsFunc func(context.Context) (int64, error)
	// ConsumersFunc returns every named consumer's committed offset; nil
	// means consumers are not sampled.
	ConsumersFunc func(context.Context) (map[string]int64, error)
	// AuthorizeFunc refuses a token that may not read the figures of
	// GET /stats; nil allows every request.
	AuthorizeFunc func(context.Context) error
	// CanConsumeFunc refuses a token that may not see a consumer in
	// GET /stats/consumers; nil allows every consumer.
	CanConsumeFunc func(ctx context.Context, name string) error
	// SampleInterval is how often the head is sampled; zero means
	// [DefaultSampleInterval].
	SampleInterval time.Duration
	// History is how far back samples are kept; zero means
	// [DefaultHistory].
	History time.Duration
	Logger  *slog.Logger
}

// Sample is the head of the log at a moment.
type Sample struct {
	At     time.Time `json:"at"`
	Events int64     `json:"events"`
}

// sample is one entry of the ring: the head and the consumers' offsets.
type sample struct {
	Sample
	offsets map[string]int64
}

// LagSample is a consumer's lag at a moment.
type LagSample struct {
	At  time.Time `json:"at"`
	Lag int64     `json:"lag"`
}

// ConsumerLag is one consumer's lag history.
type ConsumerLag struct {
	Name    string      `json:"name"`
	Samples []LagSample `json:"samples"`
}

// ConsumerStatsBody is the body of GET /stats/consumers.
type ConsumerStatsBody struct {
	IntervalSeconds float64       `json:"interval_seconds"`
	Consumers       []ConsumerLag `json:"consumers"`
}

// StatsBody is the body of GET /stats.
type StatsBody struct {
	// Events is how many events the log holds (numbers are dense, so the
	// newest number).
	Events int64 `json:"events"`
	// Streams is how many streams hold events.
	Streams int64 `json:"streams"`
	// IntervalSeconds is the sampling period of Samples.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Samples hold the head every interval over the history this process
	// has seen (at most the configured history), oldest first, the last
	// one taken at the request. The ingest rate between two samples is
	// the difference of their Events over the difference of their At.
	Samples []Sample `json:"samples"`
}

// Stats samples the head of the log and serves GET /stats. Samples live in
// the memory of the process: every process samples the same head (the
// database's), so any of them answers with the same curve, from the time it
// started.
type Stats struct {
	cfg    StatsConfig
	logger *slog.Logger

	mu           sync.Mutex
	samples      []sample // a ring, oldest at next once full
	next         int
	full         bool
	streams      int64
	streamsAt    time.Time
	streamsTTL   time.Duration // streamCountTTL, or 20 times the last count's duration
	streamsErr   error
	countingDone chan struct{} // non-nil while a count runs

	cancel context.CancelFunc
	done   chan struct{}
}

// NewStats returns a Stats; [Stats.Start] starts sampling.
func NewStats(cfg StatsConfig) *Stats {
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := max(int(cfg.History/cfg.SampleInterval), 2)
	return &Stats{cfg: cfg, logger: cfg.Logger.With("component", "console"), samples: make([]sample, n)}
}

// Start takes a sample now and then every interval until ctx ends or
// [Stats.Stop].
func (s *Stats) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	s.sample(ctx, time.Now())
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.SampleInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.sample(ctx, now)
			}
		}
	}()
}

// Stop ends sampling and waits for it.
func (s *Stats) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

func (s *Stats) sample(ctx context.Context, now time.Time) {
	var offsets map[string]int64
	if s.cfg.ConsumersFunc != nil {
		cctx, cancel := context.WithTimeout(ctx, consumersTimeout)
		all, err := s.cfg.ConsumersFunc(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.logger.DebugContext(ctx, "sample consumers", "error", err)
			}
		} else if len(all) <= MaxSampledConsumers {
			offsets = all
		} else {
			names := slices.Sorted(maps.Keys(all))
			offsets = make(map[string]int64, MaxSampledConsumers)
			for _, n := range names[:MaxSampledConsumers] {
				offsets[n] = all[n]
			}
		}
	}
	head := s.cfg.HeadFunc()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples[s.next] = sample{Sample: Sample{At: now.UTC().Truncate(time.Millisecond), Events: head}, offsets: offsets}
	s.next++
	if s.next == len(s.samples) {
		s.next, s.full = 0, true
	}
}

// history returns the samples oldest first.
func (s *Stats) history() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]sample(nil), s.samples[:s.next]...)
	}
	return append(append([]sample(nil), s.samples[s.next:]...), s.samples[:s.next]...)
}

// countStreams returns the stream count, read at most every
// streamCountTTL; concurrent requests share one count.
func (s *Stats) countStreams(ctx context.Context) (int64, error) {
	for {
		s.mu.Lock()
		if time.Since(s.streamsAt) < max(s.streamsTTL, streamCountTTL) && s.streamsErr == nil {
			n := s.streams
			s.mu.Unlock()
			return n, nil
		}
		if wait := s.countingDone; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		done := make(chan struct{})
		s.countingDone = done
		s.mu.Unlock()
		start := time.Now()
		n, err := s.cfg.CountStreamsFunc(ctx)
		s.mu.Lock()
		// A count that takes long (millions of streams) is made less often,
		// so that an open overview never keeps a connection busy more than
		// a twentieth of the time.
		s.streamsTTL = 20 * time.Since(start)
		s.streams, s.streamsAt, s.streamsErr, s.countingDone = n, time.Now(), err, nil
		s.mu.Unlock()
		close(done)
		return n, err
	}
}

// Register adds GET /stats and GET /stats/consumers.
func (s *Stats) Register(r *mux.Router) {
	r.Handle("/stats", problem.Handler(s.logger, s.handleStats)).Methods(http.MethodGet)
	r.Handle("/stats/consumers", problem.Handler(s.logger, s.handleConsumerStats)).Methods(http.MethodGet)
}

// handleConsumerStats serves GET /stats/consumers: each named consumer's
// lag (the head minus its committed offset) at every sample, by name,
// leaving out the consumers the token may not use (as GET /consumers
// does). A consumer appears from the first sample that knew it.
func (s *Stats) handleConsumerStats(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	byName := map[string][]LagSample{}
	for _, sm := range s.history() {
		for name, offset := range sm.offsets {
			byName[name] = append(byName[name], LagSample{At: sm.At, Lag: max(sm.Events-offset, 0)})
		}
	}
	out := ConsumerStatsBody{IntervalSeconds: s.cfg.SampleInterval.Seconds(), Consumers: []ConsumerLag{}}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		if s.cfg.CanConsumeFunc != nil && s.cfg.CanConsumeFunc(r.Context(), name) != nil {
			continue
		}
		out.Consumers = append(out.Consumers, ConsumerLag{Name: name, Samples: byName[name]})
	}
	problem.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleStats serves GET /stats: the event and stream counts and the head
// sampled over the last minutes (see [StatsBody]). It needs the same grant
// as /metrics, whose figures these are.
func (s *Stats) handleStats(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	if s.cfg.AuthorizeFunc != nil {
		if err := s.cfg.AuthorizeFunc(r.Context()); err != nil {
			return err
		}
	}
	streams, err := s.countStreams(r.Context())
	if err != nil {
		return err
	}
	head := s.cfg.HeadFunc()
	var samples []Sample
	for _, sm := range s.history() {
		samples = append(samples, sm.Sample)
	}
	samples = append(samples, Sample{At: time.Now().UTC().Truncate(time.Millisecond), Events: head})
	problem.WriteJSON(w, http.StatusOK, StatsBody{
		Events:          head,
		Streams:         streams,
		IntervalSeconds: s.cfg.SampleInterval.Seconds(),
		Samples:         samples,
	})
	return nil
}
