package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/collector"
	"github.com/fossil-events/fossil/console"
	"github.com/fossil-events/fossil/consumer"
	"github.com/fossil-events/fossil/feed"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/importer"
	"github.com/fossil-events/fossil/metrics"
	"github.com/fossil-events/fossil/migrations"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/openapi"
	"github.com/fossil-events/fossil/pgmanaged"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/proof"
	"github.com/fossil-events/fossil/rpc"
	"github.com/fossil-events/fossil/schema"
	"github.com/fossil-events/fossil/store"
	"github.com/fossil-events/fossil/streamer"
	"github.com/fossil-events/fossil/subscription"
	"github.com/fossil-events/fossil/tracing"
)

// Server is one running Fossil process: the database pool, the appender,
// the notifier and the HTTP server. Tests run it on Addr "127.0.0.1:0".
type Server struct {
	Config Config
	Logger *slog.Logger
	// Tracing, when set before Run, traces with that provider; nil: Run
	// configures tracing from the OTEL_* environment (off unless set).
	Tracing    *tracing.Tracing
	ownTracing bool

	cluster  *pgmanaged.Cluster
	store    *store.Store
	appender *store.Appender
	notifier *notify.Broadcaster
	hub      *feed.Hub
	metrics  *metrics.Metrics
	pprof    *http.Server // --pprof-addr, on its own loopback listener
	schemas  *schema.Registry
	subs     *subscription.Manager
	proofs   *proof.Handler
	stats    *console.Stats
	auth     *auth.Authenticator
	http     *http.Server
	listener net.Listener

	// streamCtx is the parent of every long-lived response (SSE, waits);
	// cancelling it ends them, because http.Server.Shutdown does not.
	streamCtx     context.Context
	cancelStreams context.CancelFunc
	background    sync.WaitGroup

	latestMigration uint

	closeOnce sync.Once
	closeErr  error
}

// NewServer returns a Server; [Server.Run] starts it.
func NewServer(cfg Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{Config: cfg, Logger: logger}
}

// Run connects to (or starts) PostgreSQL, applies migrations, and starts
// serving HTTP. It returns once the listener is open; [Server.Close] stops.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.Config
	// Take the port first: a busy port must not wait for PostgreSQL.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s.listener = ln
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		cluster, err := startCluster(ctx, cfg, s.Logger)
		if err != nil {
			return err
		}
		s.cluster = cluster
		dbURL = cluster.URL("postgres")
	}
	if !cfg.NoMigrate {
		if err := migrations.Up(dbURL); err != nil {
			return fmt.Errorf("apply migrations: %w", err)
		}
	}
	if s.latestMigration, err = migrations.Latest(); err != nil {
		return err
	}
	if err := s.setupTracing(ctx); err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: int32(cfg.MaxConns), Logger: s.Logger,
		ReadReplicaURLs: cfg.ReadDatabaseURLs, ReplicaMaxLag: cfg.ReadMaxLag, TracerProvider: s.queryTracerProvider()})
	if err != nil {
		return err
	}
	s.store = st
	s.metrics = s.newMetrics()
	s.metrics.RegisterReads(s.replicaStats)
	s.appender = store.NewAppender(st, store.AppenderConfig{
		TxTimeout:     cfg.AppendTimeout,
		ObserveFunc:   s.metrics.ObserveGroup,
		CommittedFunc: s.wakeLocalReaders,
		TreeFunc:      s.metrics.Tree().ObserveHashing,
		Tracer:        s.groupTracer(),
	})
	s.streamCtx, s.cancelStreams = context.WithCancel(context.WithoutCancel(ctx))

	var listener notify.Listener
	if !cfg.PollOnly {
		listener = st.NewListener()
	}
	s.notifier = notify.New(listener, notify.Config{
		Channels: store.Channels(),
		Logger:   s.Logger,
	})
	if err := s.notifier.Start(s.streamCtx); err != nil {
		return fmt.Errorf("start listener: %w", err)
	}
	st.OnCommitted(s.notifier.Notify) // this process hears its own commits at once
	s.watchReplacements()
	s.hub = feed.New(feed.Config{
		Store:        st,
		Broadcaster:  s.notifier,
		Logger:       s.Logger,
		PollInterval: cfg.PollInterval,
		Keepalive:    cfg.SSEKeepalive,
		WriteTimeout: cfg.SSEWriteTimeout,
		MaxClients:   cfg.MaxSSEClients,
		ObserveFunc:  s.metrics.ObserveDelivery,
	})
	if err := s.hub.Start(s.streamCtx); err != nil {
		return fmt.Errorf("start feed: %w", err)
	}
	s.subs = subscription.NewManager(subscription.Config{
		Store:       st,
		Broadcaster: s.notifier,
		Logger:      s.Logger,
		Observer: subscription.Observer{
			DeliveredFunc: s.metrics.ObserveSubscriptionDelivered,
			FailureFunc:   s.metrics.ObserveSubscriptionFailure,
			ParkedFunc:    s.metrics.ObserveSubscriptionParked,
		},
		LeaseTTL:     cfg.SubscriptionLease,
		Backoff:      subscriptionBackoff(cfg.SubscriptionBackoff),
		ScanInterval: min(cfg.SubscriptionLease/5, time.Second),
		AdvertiseURL: advertiseURL(cfg.AdvertiseURL, ln.Addr()),
	})
	s.subs.Start(s.streamCtx)
	s.metrics.RegisterSubscriptions(func(ctx context.Context) (map[string]metrics.SubscriptionStats, error) {
		subs, err := st.ListSubscriptions(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]metrics.SubscriptionStats, len(subs))
		for _, sub := range subs {
			out[sub.ID] = metrics.SubscriptionStats{Lag: max(sub.Head-sub.Position, 0), Parked: sub.Parked}
		}
		return out, nil
	})
	s.schemas = schema.NewRegistry(st, s.notifier, s.Logger)
	s.schemas.Authorize = auth.RequireAdmin
	if err := s.schemas.Start(s.streamCtx); err != nil {
		return fmt.Errorf("load schemas: %w", err)
	}
	s.auth, err = auth.New(auth.Config{
		Secrets:       [][]byte{[]byte(cfg.JWTSecret), []byte(cfg.JWTPreviousSecret)},
		PublicKeyFile: cfg.JWTPublicKeyFile,
		Logger:        s.Logger,
	})
	if err != nil {
		return fmt.Errorf("configure authentication: %w", err)
	}

	if s.proofs, err = s.newProofs(ctx); err != nil {
		return err
	}
	s.startTreeBuilder()

	s.stats = console.NewStats(console.StatsConfig{
		HeadFunc:         s.hub.Last,
		CountStreamsFunc: st.CountStreams,
		ConsumersFunc: func(ctx context.Context) (map[string]int64, error) {
			cs, err := st.ListConsumers(ctx)
			if err != nil {
				return nil, err
			}
			offsets := make(map[string]int64, len(cs))
			for _, c := range cs {
				offsets[c.Name] = c.Offset
			}
			return offsets, nil
		},
		AuthorizeFunc:  auth.RequireMetrics,
		CanConsumeFunc: auth.CanConsume,
		SampleInterval: cfg.StatsInterval,
		Logger:         s.Logger,
	})
	s.stats.Start(s.streamCtx)

	router := s.routes()
	s.http = &http.Server{
		Handler:           s.traceHTTP(withRequestID(recoverPanics(s.Logger, bodyDeadline(cfg.BodyTimeout, withConsole(s.auth.Middleware(router))))), router),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       0, // bodies: bodyDeadline (a server-wide read timeout would cut SSE streams)
		WriteTimeout:      0, // SSE streams are long; other handlers bound themselves
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.streamCtx },
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	// HTTP/2 without TLS (h2c, prior knowledge) next to HTTP/1.1, for gRPC
	// clients of the protobuf interface.
	s.http.Protocols = new(http.Protocols)
	s.http.Protocols.SetHTTP1(true)
	s.http.Protocols.SetUnencryptedHTTP2(true)
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http server stopped", "error", err)
		}
	}()
	if err := s.startPprof(); err != nil {
		return err
	}
	s.Logger.Info("fossil is listening", "addr", ln.Addr().String(), "version", Version())
	return nil
}

// URL returns the base URL the server listens on.
func (s *Server) URL() string { return "http://" + s.listener.Addr().String() }

// Hub returns the SSE fan-out of a running server, for tests and metrics.
func (s *Server) Hub() *feed.Hub { return s.hub }

// Notifier returns the LISTEN broadcaster of a running server, for tests.
func (s *Server) Notifier() *notify.Broadcaster { return s.notifier }

// Store returns the database layer of a running server, for tests.
func (s *Server) Store() *store.Store { return s.store }

// Close shuts down in order: stop accepting and finish plain requests, end
// long-lived streams, finish queued appends, stop the notifier, close the
// pool, stop a managed PostgreSQL. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.Config.ShutdownTimeout)
			go func() {
				// Shutdown waits for idle connections, which SSE streams never
				// become: end them right away.
				s.cancelStreams()
			}()
			if err := s.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
				_ = s.http.Close()
			}
			cancel()
		} else if s.listener != nil {
			_ = s.listener.Close() // Run failed before serving
		}
		if s.cancelStreams != nil {
			s.cancelStreams()
		}
		s.stopPprof()
		s.background.Wait()
		if s.subs != nil {
			s.subs.Stop() // each dispatcher writes its state and frees its lease
		}
		if s.appender != nil {
			s.appender.Close()
		}
		if s.schemas != nil {
			s.schemas.Stop()
		}
		if s.stats != nil {
			s.stats.Stop()
		}
		if s.hub != nil {
			s.hub.Stop()
		}
		if s.notifier != nil {
			s.notifier.Stop()
		}
		if s.store != nil {
			s.store.Close()
		}
		if err := s.shutdownTracing(); err != nil {
			errs = append(errs, err)
		}
		if s.cluster != nil {
			if err := s.cluster.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// routes builds the router: every feature registers its routes here, top
// to bottom.
func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	r.SkipClean(true) // never answer with a redirect
	r.UseEncodedPath()
	r.NotFoundHandler = http.HandlerFunc(problem.NotFound)
	r.MethodNotAllowedHandler = methodNotAllowed(r)

	r.HandleFunc("/healthz", s.handleHealthz).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/readyz", problem.Handler(s.Logger, s.handleReadyz)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/metrics", s.metricsHandler()).Methods(http.MethodGet, http.MethodHead)

	collect := collector.New(collector.Config{
		Appender:       s.appender,
		Logger:         s.Logger,
		MaxBody:        s.Config.MaxBody,
		AppendTimeout:  s.Config.AppendTimeout,
		Store:          s.store,
		Broadcaster:    s.notifier,
		WaitTimeout:    s.Config.WaitTimeout,
		MaxWaitTimeout: s.Config.MaxWaitTimeout,
		ObserveFunc:    s.metrics.ObserveAppend,
		Schemas:        s.schemas,
	})
	collect.Register(r)
	streamer.New(s.store, s.hub, s.Logger).Register(r)
	consumer.New(consumer.Config{Store: s.store, Hub: s.hub, Logger: s.Logger}).Register(r)
	s.schemas.Register(r)
	s.subs.Register(r)
	s.proofs.Register(r)
	s.stats.Register(r)
	openapi.Register(r)
	rpcHandler := rpc.New(rpc.Config{
		Appender:       s.appender,
		Store:          s.store,
		Feed:           s.hub,
		Decode:         s.decodeRPC,
		Logger:         s.Logger,
		AppendTimeout:  s.Config.AppendTimeout,
		MaxMessage:     int(s.Config.MaxBody),
		Ready:          s.ready,
		Proofs:         rpcProofs{s.proofs},
		WaitTimeout:    s.Config.WaitTimeout,
		MaxWaitTimeout: s.Config.MaxWaitTimeout,
		WaitAcks: func(ctx context.Context, numbers []int64, consumers []rpc.WaitConsumer) ([]string, error) {
			specs := make([]collector.WaitSpec, len(consumers))
			for i, c := range consumers {
				specs[i] = collector.WaitSpec{Name: c.Name, Timeout: c.Timeout}
			}
			return collect.WaitAcks(ctx, numbers, specs)
		},
		Observe: func(err error, duplicate bool, took time.Duration) {
			s.metrics.ObserveAppend(collector.AppendResult(err, duplicate), took)
		},
	})
	for _, rt := range rpcHandler.Routes() {
		r.PathPrefix(rt.Prefix).Handler(rt.Handler)
	}
	importer.New(importer.Config{Store: s.store, Logger: s.Logger, MaxLine: 4*int(s.Config.MaxBody) + 64<<10}).Register(r)
	return r
}

// withConsole serves the web console's files (console.Match) without a
// token: they are static and hold no data, and the console asks for a
// token when the API it calls answers 401. Every other path goes to api.
func withConsole(api http.Handler) http.Handler {
	ui := console.NewUI()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if console.Match(r.URL.Path) {
			ui.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// rpcProofs serves the proof RPCs with the proof handler.
type rpcProofs struct{ h *proof.Handler }

func (p rpcProofs) Checkpoint(ctx context.Context) ([]byte, int64, []byte, error) {
	signed, ts, err := p.h.Current(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	root := ts.Edge.Root()
	return signed, ts.Size, root[:], nil
}

func (p rpcProofs) VerifierKey() string { return p.h.VerifierKey() }

func (p rpcProofs) Inclusion(ctx context.Context, n, size int64, numberLoc, sizeLoc string) (int64, int64, []byte, [][]byte, error) {
	ip, err := p.h.Inclusion(ctx, n, size, numberLoc, sizeLoc)
	if err != nil {
		return 0, 0, nil, nil, err
	}
	return ip.LeafIndex, ip.TreeSize, ip.LeafHash[:], hashes(ip.Proof), nil
}

func (p rpcProofs) Consistency(ctx context.Context, from, to int64, loc string) ([][]byte, error) {
	cp, err := p.h.Consistency(ctx, from, to, loc)
	if err != nil {
		return nil, err
	}
	return hashes(cp.Proof), nil
}

func hashes(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// decodeRPC checks an event of the protobuf interface as POST /collect
// checks one: the collector's decoder, then the schema registry.
func (s *Server) decodeRPC(loc string, doc []byte) (*fossil.Event, error) {
	d, err := collector.DecodeStructured(loc, doc)
	if err != nil {
		return nil, err
	}
	if s.schemas != nil {
		if err := s.schemas.Validate(d.Location, d.Event.Type, d.DataKind, d.Data); err != nil {
			return nil, err
		}
	}
	return d.Event, nil
}

// subscriptionBackoff is the default retry policy, or one starting at
// initial (tests).
func subscriptionBackoff(initial time.Duration) subscription.Backoff {
	b := subscription.DefaultBackoff
	if initial > 0 {
		b.Initial = initial
		b.Max = max(initial*8, initial)
	}
	return b
}

// wakeLocalReaders serves this process's streams right after a commit: the
// hub takes the new events directly when they follow what it holds, and
// otherwise its tailer is woken to read them, without waiting for the
// database notification (which still wakes the other processes, and which
// poll-only mode never gets).
func (s *Server) wakeLocalReaders(head int64, inserted []*fossil.Event, replaced bool) {
	if s.notifier == nil {
		return
	}
	published := s.hub != nil && s.hub.Publish(inserted, replaced)
	if s.subs != nil {
		s.subs.Wake()
	}
	if replaced {
		s.notifier.Notify(store.ChannelReplaced, "")
	}
	if !published {
		s.notifier.Notify(store.ChannelEvents, strconv.FormatInt(head, 10))
	}
	// Every reader of this process has been woken for the events up to
	// head: the database's echo of this commit need not wake them again.
	s.notifier.Local(store.ChannelEvents, head)
}

// handleHealthz serves GET /healthz: the process is up.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	problem.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz serves GET /readyz: the database answers and carries every
// migration this binary embeds.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	v, dirty, err := s.readiness(r.Context())
	switch {
	case err != nil:
		problem.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "database unreachable or not migrated"})
	case dirty || uint(v) < s.latestMigration:
		problem.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "reason": "database is not fully migrated", "version": v, "dirty": dirty})
	default:
		problem.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "version": v})
	}
	return nil
}

// readiness reads the database's migration version, within 2 s.
func (s *Server) readiness(ctx context.Context) (int64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, dirty, err := s.store.MigrationVersion(ctx)
	return int64(v), dirty, err
}

// ready is the check of GET /readyz as an error, for the gRPC health
// service.
func (s *Server) ready(ctx context.Context) error {
	v, dirty, err := s.readiness(ctx)
	switch {
	case err != nil:
		return err
	case dirty || uint(v) < s.latestMigration:
		return fmt.Errorf("%w: the database is not fully migrated", fossil.ErrUnavailable)
	}
	return nil
}

// methodNotAllowed answers 405 with an Allow header listing the methods the
// matched path accepts.
func methodNotAllowed(router *mux.Router) http.Handler {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range methods {
			probe := r.Clone(r.Context())
			probe.Method = m
			var match mux.RouteMatch
			if router.Match(probe, &match) && match.MatchErr == nil {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
		}
		problem.MethodNotAllowed(w, r)
	})
}
