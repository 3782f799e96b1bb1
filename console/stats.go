package console

import (
	"context"
	"log/slog"
	"net/http"
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
)

// StatsConfig configures [Stats].
type StatsConfig struct {
	// HeadFunc returns the newest committed event number (the hub's,
	// which follows every process's commits).
	HeadFunc func() int64
	// CountStreamsFunc counts the streams (store.CountStreams).
	CountStreamsFunc func(context.Context) (int64, error)
	// AuthorizeFunc refuses a token that may not read the figures; nil
	// allows every request.
	AuthorizeFunc func(context.Context) error
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
	samples      []Sample // a ring, oldest at next once full
	next         int
	full         bool
	streams      int64
	streamsAt    time.Time
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
	return &Stats{cfg: cfg, logger: cfg.Logger.With("component", "console"), samples: make([]Sample, n)}
}

// Start takes a sample now and then every interval until ctx ends or
// [Stats.Stop].
func (s *Stats) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	s.sample(time.Now())
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.SampleInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.sample(now)
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

func (s *Stats) sample(now time.Time) {
	head := s.cfg.HeadFunc()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples[s.next] = Sample{At: now.UTC().Truncate(time.Millisecond), Events: head}
	s.next++
	if s.next == len(s.samples) {
		s.next, s.full = 0, true
	}
}

// history returns the samples oldest first.
func (s *Stats) history() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]Sample(nil), s.samples[:s.next]...)
	}
	return append(append([]Sample(nil), s.samples[s.next:]...), s.samples[:s.next]...)
}

// countStreams returns the stream count, read at most every
// streamCountTTL; concurrent requests share one count.
func (s *Stats) countStreams(ctx context.Context) (int64, error) {
	for {
		s.mu.Lock()
		if time.Since(s.streamsAt) < streamCountTTL && s.streamsErr == nil {
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
		n, err := s.cfg.CountStreamsFunc(ctx)
		s.mu.Lock()
		s.streams, s.streamsAt, s.streamsErr, s.countingDone = n, time.Now(), err, nil
		s.mu.Unlock()
		close(done)
		return n, err
	}
}

// Register adds GET /stats.
func (s *Stats) Register(r *mux.Router) {
	r.Handle("/stats", problem.Handler(s.logger, s.handleStats)).Methods(http.MethodGet)
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
	samples := append(s.history(), Sample{At: time.Now().UTC().Truncate(time.Millisecond), Events: head})
	problem.WriteJSON(w, http.StatusOK, StatsBody{
		Events:          head,
		Streams:         streams,
		IntervalSeconds: s.cfg.SampleInterval.Seconds(),
		Samples:         samples,
	})
	return nil
}
