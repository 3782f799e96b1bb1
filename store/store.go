// Package store owns every SQL statement Fossil runs and the pgx pool they
// run on. Methods translate PostgreSQL failures into the sentinels of package
// fossil in one place, [interpretError].
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"

	"github.com/fossil-events/fossil/fossil"
)

// Notification channels. Payloads are hints; readers always re-read SQL.
// Every channel is declared through channel(), so that [Channels] lists
// them all for the LISTEN connection: there is no list to keep by hand.
var (
	ChannelEvents   = channel("fossil_events")   // payload: newest committed event number
	ChannelReplaced = channel("fossil_replaced") // payload: comma-separated replaced event numbers
	ChannelAcks     = channel("fossil_acks")     // payload: "<event number>:<consumer name>"
	ChannelSchemas  = channel("fossil_schemas")  // payload: the CloudEvents type whose schema changed
)

// channels is the registry of notification channels, filled at package
// initialisation.
var channels []string

// channel registers a notification channel and returns its name.
func channel(name string) string {
	channels = append(channels, name)
	return name
}

// Channels returns every notification channel the store notifies on.
func Channels() []string { return slices.Clone(channels) }

// OnCommitted sets the post-commit hook: after a transaction of the store
// that notified channel with payload commits, fn(channel, payload) runs in
// this process, so that its own readers need not wait for the database's
// notification (which poll-only mode never gets). Appended events have a
// richer hook of their own, [AppenderConfig].CommittedFunc. Set it before
// serving; nil turns it off.
func (s *Store) OnCommitted(fn func(channel, payload string)) {
	if fn == nil {
		s.onCommitted.Store(nil)
		return
	}
	s.onCommitted.Store(&fn)
}

// committed runs the post-commit hook, if any.
func (s *Store) committed(channel, payload string) {
	if fn := s.onCommitted.Load(); fn != nil {
		(*fn)(channel, payload)
	}
}

// Store is Fossil's PostgreSQL access layer. It is safe for concurrent use.
//
// Connections: the appender has a pool of its own (writePool), so that no
// number of readers can leave it waiting for a connection; page reads of
// the log (SSE catch-up, the query endpoints) wait their turn in one FIFO
// queue for at most MaxReaders of the main pool's connections, so that
// they leave connections for everything else and are served in the order
// they came.
type Store struct {
	pool      *pgxpool.Pool
	writePool *pgxpool.Pool
	readers   *semaphore.Weighted
	waiting   atomic.Int64 // page reads queued for a turn
	logger    *slog.Logger
	cat       catalogue // the stream catalogue of template reads
	reps      replicas  // read replicas (replicas.go)

	onCommitted atomic.Pointer[func(channel, payload string)] // see OnCommitted
}

// Config configures [Open].
type Config struct {
	DatabaseURL string
	MaxConns    int32         // 0 means 20
	Logger      *slog.Logger  // nil discards
	ConnTimeout time.Duration // 0 means 10s
	// WriterConns is the size of the appender's own pool, apart from
	// MaxConns; 0 means 2 (a group committing and the next one, sent
	// while it commits; with 1, groups wait for each other).
	WriterConns int32
	// MaxReaders bounds the page reads of the log that run at once; the
	// others queue in arrival order. 0 means half of MaxConns.
	MaxReaders int
	// ReadReplicaURLs name streaming replicas of DatabaseURL: catch-up
	// page reads go to them up to what they have replayed (replicas.go).
	// Each gets a pool of MaxConns connections.
	ReadReplicaURLs []string
	// ReplicaMaxLag: a replica lacking an event the primary has had for
	// longer than this is not read. 0 means 30s.
	ReplicaMaxLag time.Duration
	// TracerProvider, when set, traces the statements (otelpgx): a span
	// per query, batch and COPY under the span of the operation that ran
	// it; statements outside any traced operation make none. nil (tracing
	// off) installs no hook.
	TracerProvider trace.TracerProvider
	// ReplicaCheckInterval is how often each replica's replayed head is
	// read. 0 means 1s.
	ReplicaCheckInterval time.Duration
}

// Open connects a pool and checks that the database answers. It fails fast
// when PostgreSQL is unreachable; later outages are ridden out by the pool.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	if pcfg.MaxConns == 0 {
		pcfg.MaxConns = 20
	}
	if cfg.ConnTimeout == 0 {
		cfg.ConnTimeout = 10 * time.Second
	}
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnTimeout
	pcfg.HealthCheckPeriod = 5 * time.Second
	// pgx prepares each statement once per connection, and PostgreSQL
	// switches a prepared statement to a generic plan after five runs. A
	// generic plan made while the log was small (a sequential scan of
	// fossil_events for the idempotency lookup, say) is kept as the log
	// grows. Custom plans cost a fraction of a millisecond and always use
	// the indexes. A URL that sets plan_cache_mode itself wins.
	_, urlPlans := pcfg.ConnConfig.RuntimeParams["plan_cache_mode"]
	// No JIT compilation: every statement Fossil runs reads or writes a
	// bounded page, where compiling the plan costs far more than running
	// it. The page of a template read (a LIMIT per matching stream over
	// hundreds of streams) is estimated above jit_above_cost, and
	// compiling its 17 functions took 20–70 ms on every read where the
	// read itself took 1 ms (docs/PERFORMANCE.md, "At scale"). A URL that
	// sets jit itself wins.
	if _, ok := pcfg.ConnConfig.RuntimeParams["jit"]; !ok {
		pcfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	if cfg.TracerProvider != nil {
		pcfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(cfg.TracerProvider), otelpgx.WithDisableAcquireTracer())
	}
	wcfg := pcfg.Copy()
	if !urlPlans {
		pcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
		// The appender's statements are the opposite case: writes, and
		// point lookups by primary or unique key, whose plan does not
		// depend on their parameters or on the size of the tables. They
		// run for every group, and planning them each time was most of
		// PostgreSQL's work for a group of one (docs/PERFORMANCE.md, "One
		// writer"), so they keep one generic plan per connection; with
		// sequential scans disabled, a plan made while a table was small
		// cannot scan it once it is large. The penalty cost of a disabled
		// scan (the one-row fossil_head has no other plan) would make
		// every execution compile its plan with JIT: off.
		wcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
		wcfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
		wcfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	wcfg.MaxConns = cfg.WriterConns
	if wcfg.MaxConns <= 0 {
		wcfg.MaxConns = 2
	}
	wcfg.MinConns = 1
	if cfg.MaxReaders <= 0 {
		cfg.MaxReaders = max(int(pcfg.MaxConns)/2, 1)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	writePool, err := pgxpool.NewWithConfig(ctx, wcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open writer pool: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		pool:      pool,
		writePool: writePool,
		readers:   semaphore.NewWeighted(int64(cfg.MaxReaders)),
		logger:    logger.With("component", "store"),
	}
	if err := s.openReplicas(ctx, cfg, pcfg); err != nil {
		writePool.Close()
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pools, waiting for acquired connections to be released.
func (s *Store) Close() {
	s.closeReplicas()
	s.writePool.Close()
	s.pool.Close()
}

// WriterPool exposes the appender's pool to metrics.
func (s *Store) WriterPool() *pgxpool.Pool { return s.writePool }

// ReadersWaiting returns how many page reads are queued for their turn.
func (s *Store) ReadersWaiting() int64 { return s.waiting.Load() }

// readTurn waits, in arrival order, until fewer than MaxReaders page reads
// run; the caller calls the returned func when its rows are read.
func (s *Store) readTurn(ctx context.Context) (func(), error) {
	if s.readers == nil { // a Store made without Open, in tests
		return func() {}, nil
	}
	s.waiting.Add(1)
	err := s.readers.Acquire(ctx, 1)
	s.waiting.Add(-1)
	if err != nil {
		return nil, interpretError(fmt.Errorf("wait for a read turn: %w", err))
	}
	return func() { s.readers.Release(1) }, nil
}

// Pool exposes the pool to the notify listener and metrics. Feature
// packages must not run SQL on it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return interpretError(s.pool.Ping(ctx))
}

// DBTX runs statements in or out of a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// WithTx runs fn in a transaction, committing when fn returns nil. The
// rollback runs even when ctx is cancelled.
func WithTx(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// interpretError maps pgx and PostgreSQL errors to fossil sentinels:
// no rows → ErrNotFound, connection loss, timeouts, server shutdown and
// exhausted resources (a full disk) → ErrUnavailable, text PostgreSQL
// cannot hold → ErrInvalid. The driver's text (which may name the user,
// database, host, port or a file) is kept for the log and concealed from
// clients (see [fossil.ConcealedError]). Other errors are returned
// unchanged (and become a 500 that says nothing of its cause).
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fossil.Conceal(fmt.Errorf("%w: %w", fossil.ErrNotFound, err), pgx.ErrNoRows, "does not exist")
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return fossil.Conceal(fmt.Errorf("%w: database timeout: %w", fossil.ErrUnavailable, err), err, "the database did not answer in time; retry later")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources (disk full, out of memory, too many connections)
			"57": // operator intervention (admin shutdown, cancel, crash)
			return fossil.Conceal(fmt.Errorf("%w: database: %w", fossil.ErrUnavailable, err), err, "the database cannot serve the request now; retry later")
		}
		switch pgErr.Code {
		case "23505": // unique_violation
			switch pgErr.ConstraintName {
			case "fossil_events_stream_sequence_key":
				return fossil.Conceal(fmt.Errorf("%w: %w", fossil.ErrSequenceConflict, err), err, "the stream's sequence moved meanwhile")
			case "fossil_events_id_source_key":
				return fossil.Conceal(fmt.Errorf("%w: %w", fossil.ErrConflict, err), err, "an event with this source and id is already stored")
			}
		case "22021", // character_not_in_repertoire: invalid UTF-8, NUL
			"22P05": // untranslatable_character
			return fossil.Conceal(fmt.Errorf("%w: %w", fossil.ErrInvalid, err), err, "the request holds text that cannot be stored (invalid UTF-8 or a NUL character)")
		}
		return err
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, puddle.ErrClosedPool) {
		return fossil.Conceal(fmt.Errorf("%w: database unreachable: %w", fossil.ErrUnavailable, err), err, "retry later")
	}
	return err
}

const migrationVersionSQL = `SELECT version, dirty FROM fossil_schema_migrations LIMIT 1`

// MigrationVersion returns the applied migration version and whether the
// last migration was left half-applied. Errors: [fossil.ErrNotFound] when
// no migration was ever applied.
func (s *Store) MigrationVersion(ctx context.Context) (int64, bool, error) {
	var v int64
	var dirty bool
	if err := s.pool.QueryRow(ctx, migrationVersionSQL).Scan(&v, &dirty); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return 0, false, fmt.Errorf("%w: no migrations applied", fossil.ErrNotFound)
		}
		return 0, false, interpretError(fmt.Errorf("migration version: %w", err))
	}
	return v, dirty, nil
}
