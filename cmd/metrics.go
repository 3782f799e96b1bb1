package cmd

import (
	"context"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/metrics"
	"github.com/fossil-events/fossil/problem"
)

// newMetrics builds the Prometheus metrics of s. The functions it hands over
// run at scrape time only: open streams from the hub, consumer lag from one
// query bounded by a short timeout, and pool statistics from pgxpool.
func (s *Server) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Config{
		SubscribersFunc: func() int64 {
			if s.hub == nil { // scraped before Run finished wiring
				return 0
			}
			return s.hub.Clients()
		},
		ConsumerLagFunc: func(ctx context.Context) (map[string]int64, error) {
			consumers, err := s.store.ListConsumers(ctx)
			if err != nil {
				return nil, err
			}
			lags := make(map[string]int64, len(consumers))
			for _, c := range consumers {
				lags[c.Name] = c.Lag
			}
			return lags, nil
		},
		ConsumerLagTimeout: time.Second,
		Version:            Version(),
		ReadersWaitingFunc: func() int64 { return s.store.ReadersWaiting() },
		PoolStatsFunc: func() metrics.PoolStats {
			st := s.store.Pool().Stat()
			return metrics.PoolStats{
				AcquiredConns:   st.AcquiredConns(),
				IdleConns:       st.IdleConns(),
				TotalConns:      st.TotalConns(),
				MaxConns:        st.MaxConns(),
				AcquireCount:    st.AcquireCount(),
				AcquireDuration: st.AcquireDuration(),
				EmptyAcquire:    st.EmptyAcquireCount(),
			}
		},
	})
}

// metricsHandler serves /metrics to tokens with the admin or the metrics
// grant; consumer-lag series name only the consumers the token may use, as
// GET /consumers does.
func (s *Server) metricsHandler() http.Handler {
	h := s.metrics.FilteredHandler(func(r *http.Request) func(string) bool { return auth.ConsumeFilter(r.Context()) })
	// Scrapes take turns, a few at a time, rather than being refused.
	turns := make(chan struct{}, 4)
	return problem.Handler(s.Logger, func(w http.ResponseWriter, r *http.Request) error {
		if err := auth.RequireMetrics(r.Context()); err != nil {
			return err
		}
		select {
		case turns <- struct{}{}:
		case <-r.Context().Done():
			return r.Context().Err()
		}
		defer func() { <-turns }()
		h.ServeHTTP(w, r)
		return nil
	})
}

// startPprof serves net/http/pprof on Config.PprofAddr, a loopback address
// of its own, so profiles are never reachable through the public listener.
// It does nothing when the address is empty.
func (s *Server) startPprof() error {
	if s.Config.PprofAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", s.Config.PprofAddr)
	if err != nil {
		return &ConfigError{"pprof-addr", err}
	}
	s.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		_ = s.pprof.Serve(ln) // ends with http.ErrServerClosed at stopPprof
	}()
	s.Logger.Info("pprof is listening", "addr", ln.Addr().String())
	return nil
}

// stopPprof closes the pprof listener and any profile being taken.
func (s *Server) stopPprof() {
	if s.pprof != nil {
		_ = s.pprof.Close()
	}
}

// isLoopbackAddr reports whether addr is host:port with a loopback host
// (127.0.0.0/8, ::1 or localhost).
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
