package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/semaphore"

	"github.com/fossil-events/fossil/fossil"
)

// Read replicas.
//
// The log is dense and commit-ordered, and fossil_head moves in the same
// transaction as the rows it counts, so a streaming replica of the
// primary always holds a contiguous prefix of the log, 1..R, where R is
// its fossil_head.last_number as replayed. A page read of (after,
// through] is therefore split at R: the replica serves (after,
// min(through, R)], and when that part does not fill the page the primary
// serves the rest, (R, through], with what is left of the page's count and
// bytes. The two parts cannot overlap or leave a gap, whatever the lag,
// and the page is the one the primary alone would have returned.
//
// R is read by a monitor, one per replica, every ReplicaCheckInterval; it
// only grows on a replica, and a statement run later sees at least what
// an earlier one saw. Every statement run on a replica still checks, in
// the same snapshot, that the replica's head reaches the bound it was given
// (see replicaGuard): a URL that balances over several standbys, or a
// replica rebuilt from an older backup, fails the check (division by
// zero) and the page is read from the primary instead.
//
// Replacements update rows in place, so a replica that has not replayed
// one would serve the old content. The monitor compares the replicas'
// replacement count with the primary's, and [Store.ReplicasReplaced] (the
// fossil_replaced notification) takes every replica out of use until the
// monitor has seen it replay the replacement.
//
// A replica is not read while it is unreachable, not a standby, behind a
// replacement, or lagging: the primary has had an event it lacks for
// longer than ReplicaMaxLag. Its reads then go to the primary; a log line
// says so, and again when it is back in use.

// ReplicaStatus describes one read replica, for metrics and logs.
type ReplicaStatus struct {
	Name   string // host:port/database, without credentials
	InUse  bool   // catch-up reads go to it
	Reason string // why it is not in use; empty when it is
	// Replayed is the newest event the replica holds (its head as last
	// checked); Behind is the primary's head minus it, at that check.
	Replayed, Behind int64
	// Lag is how long the primary has had the oldest event the replica
	// lacks (0 when it lacks none).
	Lag time.Duration
	// Pages and Events count the page reads it served (whole or in part)
	// and their events; Failures the reads that failed on it and were
	// read from the primary instead.
	Pages, Events, Failures int64
}

// Reasons a replica is out of use.
const (
	ReplicaUnchecked   = "not checked yet"
	ReplicaUnreachable = "unreachable"
	ReplicaNotStandby  = "not a standby"
	ReplicaReplacement = "replacement not replayed"
	ReplicaLagging     = "lagging"
	ReplicaReadFailed  = "a read failed"
)

// replica is one read replica.
type replica struct {
	name    string
	pool    *pgxpool.Pool
	turns   *semaphore.Weighted
	state   atomic.Pointer[replicaState]
	gen     atomic.Int64  // bumped when a check's result must not put it back in use
	recheck chan struct{} // capacity 1: check now

	pages, events, failures atomic.Int64

	// heads are the primary heads the monitor saw grow, oldest first: the
	// first greater than the replica's head tells how long it has lagged.
	heads []headSeen
}

type headSeen struct {
	head int64
	at   time.Time
}

type replicaState struct {
	inUse    bool
	reason   string
	replayed int64
	behind   int64
	lag      time.Duration
}

// replicas is the Store's set of read replicas.
type replicas struct {
	list     []*replica
	next     atomic.Uint64
	maxLag   atomic.Int64 // a time.Duration; tests change it
	interval time.Duration
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	primaryPages, primaryEvents atomic.Int64
}

// openReplicas opens a pool per replica URL (without connecting: a replica
// that is down does not stop the start) and starts their monitors.
func (s *Store) openReplicas(ctx context.Context, cfg Config, base *pgxpool.Config) error {
	if cfg.ReplicaMaxLag <= 0 {
		cfg.ReplicaMaxLag = 30 * time.Second
	}
	s.reps.maxLag.Store(int64(cfg.ReplicaMaxLag))
	s.reps.interval = cfg.ReplicaCheckInterval
	if s.reps.interval <= 0 {
		s.reps.interval = time.Second
	}
	names := map[string]int{}
	for _, u := range cfg.ReadReplicaURLs {
		pcfg, err := pgxpool.ParseConfig(u)
		if err != nil {
			s.closeReplicas()
			return fmt.Errorf("parse read database url: %w", err)
		}
		pcfg.MaxConns = base.MaxConns
		pcfg.HealthCheckPeriod = base.HealthCheckPeriod
		pcfg.ConnConfig.ConnectTimeout = base.ConnConfig.ConnectTimeout
		if _, ok := pcfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
			pcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
		}
		if _, ok := pcfg.ConnConfig.RuntimeParams["jit"]; !ok {
			pcfg.ConnConfig.RuntimeParams["jit"] = "off" // as on the primary (Open)
		}
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			s.closeReplicas()
			return fmt.Errorf("open read replica pool: %w", err)
		}
		name := replicaName(pcfg.ConnConfig)
		if n := names[name]; n > 0 {
			name += "#" + strconv.Itoa(n+1)
		}
		names[replicaName(pcfg.ConnConfig)]++
		r := &replica{
			name:    name,
			pool:    pool,
			turns:   semaphore.NewWeighted(int64(max(pcfg.MaxConns-1, 1))), // one for the monitor
			recheck: make(chan struct{}, 1),
		}
		r.state.Store(&replicaState{reason: ReplicaUnchecked})
		s.reps.list = append(s.reps.list, r)
	}
	if len(s.reps.list) == 0 {
		return nil
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.reps.cancel = cancel
	for _, r := range s.reps.list {
		s.reps.wg.Add(1)
		go func() {
			defer s.reps.wg.Done()
			s.monitor(mctx, r)
		}()
	}
	return nil
}

// replicaName names a replica by host, port and database.
func replicaName(c *pgx.ConnConfig) string {
	host := c.Host
	if len(host) > 0 && host[0] == '/' {
		host = "unix:" + host
	}
	return host + ":" + strconv.Itoa(int(c.Port)) + "/" + c.Database
}

// closeReplicas stops the monitors and closes the replica pools.
func (s *Store) closeReplicas() {
	if s.reps.cancel != nil {
		s.reps.cancel()
		s.reps.wg.Wait()
	}
	for _, r := range s.reps.list {
		r.pool.Close()
	}
}

// ReplicaStatuses returns the state of every read replica, in the order
// they were configured.
func (s *Store) ReplicaStatuses() []ReplicaStatus {
	out := make([]ReplicaStatus, len(s.reps.list))
	for i, r := range s.reps.list {
		st := r.state.Load()
		out[i] = ReplicaStatus{
			Name: r.name, InUse: st.inUse, Reason: st.reason,
			Replayed: st.replayed, Behind: st.behind, Lag: st.lag,
			Pages: r.pages.Load(), Events: r.events.Load(), Failures: r.failures.Load(),
		}
	}
	return out
}

// PrimaryReads returns the page reads of the log (catch-up, queries and
// dispatch, not the live tail) the primary served, whole or in part, and
// their events.
func (s *Store) PrimaryReads() (pages, events int64) {
	return s.reps.primaryPages.Load(), s.reps.primaryEvents.Load()
}

// ReplicasReplaced takes every replica out of use until it has replayed
// the replacements committed so far: call it on the fossil_replaced
// notification. A replica's rows are otherwise the primary's.
func (s *Store) ReplicasReplaced() {
	for _, r := range s.reps.list {
		r.gen.Add(1)
		r.setState(s.logger, func(st *replicaState) { st.inUse, st.reason = false, ReplicaReplacement })
		r.wake()
	}
}

func (r *replica) wake() {
	select {
	case r.recheck <- struct{}{}:
	default:
	}
}

// setState applies change to a copy of the state, publishes it, and logs
// when the replica goes out of use or comes back.
func (r *replica) setState(logger *slog.Logger, change func(*replicaState)) {
	for {
		old := r.state.Load()
		st := *old
		change(&st)
		if !r.state.CompareAndSwap(old, &st) {
			continue
		}
		switch {
		case old.inUse && !st.inUse:
			logger.Warn("read replica out of use: its reads go to the primary", "replica", r.name, "reason", st.reason,
				"replayed", st.replayed, "behind", st.behind, "lag", st.lag)
		case !old.inUse && st.inUse:
			logger.Info("read replica in use", "replica", r.name, "replayed", st.replayed, "behind", st.behind, "lag", st.lag)
		case !st.inUse && old.reason != st.reason && old.reason != ReplicaUnchecked:
			logger.Warn("read replica still out of use", "replica", r.name, "reason", st.reason)
		case !st.inUse && old.reason == ReplicaUnchecked:
			logger.Warn("read replica not in use: its reads go to the primary", "replica", r.name, "reason", st.reason)
		}
		return
	}
}

const (
	primaryStateSQL = `SELECT last_number, replacements FROM fossil_head`
	replicaStateSQL = `SELECT pg_is_in_recovery(), last_number, replacements FROM fossil_head`
)

// monitor checks r every interval (and when woken) until ctx ends.
func (s *Store) monitor(ctx context.Context, r *replica) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.recheck:
			timer.Stop()
		}
		s.check(ctx, r)
		timer.Reset(s.reps.interval)
	}
}

// check reads the primary's head and replacement count, then the
// replica's (in that order: a replica that matches a count read after the
// primary's has replayed everything the primary had replaced by then), and
// decides whether the replica is in use.
func (s *Store) check(ctx context.Context, r *replica) {
	gen := r.gen.Load()
	ctx, cancel := context.WithTimeout(ctx, max(2*s.reps.interval, 2*time.Second))
	defer cancel()
	var head, replacements int64
	if err := s.pool.QueryRow(ctx, primaryStateSQL).Scan(&head, &replacements); err != nil {
		return // the primary is down: nothing is read anywhere, keep the state
	}
	now := time.Now()
	if n := len(r.heads); n == 0 || r.heads[n-1].head < head {
		r.heads = append(r.heads, headSeen{head, now})
	}
	var standby bool
	var replayed, replicaReplacements int64
	err := r.pool.QueryRow(ctx, replicaStateSQL).Scan(&standby, &replayed, &replicaReplacements)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // stopping
		}
		s.logger.Debug("read replica check failed", "replica", r.name, "error", err)
		r.setState(s.logger, func(st *replicaState) { st.inUse, st.reason = false, ReplicaUnreachable })
		return
	}
	// Forget the heads the replica has reached; the oldest one left is the
	// first event it lacks.
	i := 0
	for i < len(r.heads) && r.heads[i].head <= replayed {
		i++
	}
	r.heads = r.heads[i:]
	if len(r.heads) > 1024 { // paused for long: keep the oldest, thin the rest
		kept := r.heads[:1]
		for j := 1; j < len(r.heads); j += 2 {
			kept = append(kept, r.heads[j])
		}
		r.heads = kept
	}
	var lag time.Duration
	if len(r.heads) > 0 {
		lag = now.Sub(r.heads[0].at)
	}
	reason := ""
	switch {
	case !standby:
		reason = ReplicaNotStandby
	case replicaReplacements < replacements:
		reason = ReplicaReplacement
	case lag > time.Duration(s.reps.maxLag.Load()):
		reason = ReplicaLagging
	}
	r.setState(s.logger, func(st *replicaState) {
		if reason == "" && r.gen.Load() != gen {
			// A replacement was notified during the check, which may
			// not have seen it: check again.
			reason = ReplicaReplacement
			r.wake()
		}
		st.inUse, st.reason = reason == "", reason
		st.replayed, st.behind, st.lag = replayed, max(head-replayed, 0), lag
	})
}

// pick returns a replica in use that holds events after after, and the
// newest event it holds; the replicas take turns.
func (s *Store) pick(after int64) (*replica, int64) {
	n := uint64(len(s.reps.list))
	if n == 0 {
		return nil, 0
	}
	start := s.reps.next.Add(1)
	for i := range n {
		r := s.reps.list[(start+i)%n]
		if st := r.state.Load(); st.inUse && st.replayed > after {
			return r, st.replayed
		}
	}
	return nil, 0
}

// pageDB is where one part of a page read runs: the primary, or a replica,
// whose statements are guarded (see replicaGuard).
type pageDB struct {
	pool    *pgxpool.Pool
	replica bool
}

// query runs a page statement; on a replica, its guarded form.
func (d pageDB) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if d.replica {
		guarded, ok := replicaSQL[sql]
		if !ok {
			panic("store: no replica form of a page statement")
		}
		sql = guarded
	}
	return d.pool.Query(ctx, sql, args...)
}

// pageReader reads a page of (after, through] (through 0: no bound) on db:
// at most limit events and maxBytes of documents.
type pageReader func(ctx context.Context, db pageDB, after, through int64, limit int, maxBytes int64) ([]*fossil.Event, error)

// routePage reads a page of (after, through] (through 0: no bound) from a
// replica up to what it holds and the rest from the primary; see the top
// of this file. read runs one part; routePage takes the read turns.
func (s *Store) routePage(ctx context.Context, after, through int64, limit int, maxBytes int64, read pageReader) ([]*fossil.Event, error) {
	if r, replayed := s.pick(after); r != nil {
		bound := replayed
		if through > 0 && through < bound {
			bound = through
		}
		events, err := s.readReplica(ctx, r, func(ctx context.Context, db pageDB) ([]*fossil.Event, error) {
			return read(ctx, db, after, bound, limit, maxBytes)
		})
		if err == nil {
			if bound == through || PageFull(events, limit, maxBytes) {
				return events, nil
			}
			rest, err := s.readPrimary(ctx, func(ctx context.Context, db pageDB) ([]*fossil.Event, error) {
				return read(ctx, db, bound, through, limit-len(events), maxBytes-docBytes(events))
			})
			if err != nil {
				return nil, err
			}
			return append(events, rest...), nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
	return s.readPrimary(ctx, func(ctx context.Context, db pageDB) ([]*fossil.Event, error) {
		return read(ctx, db, after, through, limit, maxBytes)
	})
}

// readPrimary runs one part of a page read on the primary, in its turn.
func (s *Store) readPrimary(ctx context.Context, read func(context.Context, pageDB) ([]*fossil.Event, error)) ([]*fossil.Event, error) {
	done, err := s.readTurn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	events, err := read(ctx, pageDB{pool: s.pool})
	if err == nil {
		s.reps.primaryPages.Add(1)
		s.reps.primaryEvents.Add(int64(len(events)))
	}
	return events, err
}

// readReplica runs one part of a page read on r, in its turn. A failure
// takes r out of use until its next check; the caller reads the primary.
func (s *Store) readReplica(ctx context.Context, r *replica, read func(context.Context, pageDB) ([]*fossil.Event, error)) ([]*fossil.Event, error) {
	if err := r.turns.Acquire(ctx, 1); err != nil {
		return nil, interpretError(fmt.Errorf("wait for a read turn: %w", err))
	}
	events, err := read(ctx, pageDB{pool: r.pool, replica: true})
	r.turns.Release(1)
	if err != nil {
		if ctx.Err() == nil {
			r.failures.Add(1)
			reason := ReplicaReadFailed
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "22012" {
				reason = "behind the head it reported" // the guard
			}
			s.logger.Warn("read from a replica failed; reading the primary", "replica", r.name, "error", err)
			r.setState(s.logger, func(st *replicaState) { st.inUse, st.reason = false, reason })
			r.wake()
		}
		return nil, err
	}
	r.pages.Add(1)
	r.events.Add(int64(len(events)))
	return events, nil
}

// docBytes is the length of the documents of events.
func docBytes(events []*fossil.Event) int64 {
	var n int64
	for _, e := range events {
		n += int64(len(e.Doc))
	}
	return n
}

// replicaGuard wraps a page statement run on a replica so that it fails
// (division by zero) unless the replica's head, in the statement's own
// snapshot, reaches the bound in parameter param: then every event the
// statement may return up to the bound is on the replica. The check is an
// uncorrelated subquery, so it runs once, before any row (a one-time
// filter), and order keeps the inner statement's order.
func replicaGuard(inner, order, param string) string {
	return `SELECT ` + eventColumns + ` FROM (` + inner + `) guarded
WHERE (SELECT last_number / (last_number >= ` + param + `)::int FROM fossil_head) IS NOT NULL
ORDER BY ` + order
}

// replicaSQL maps every page statement that may run on a replica to its
// guarded form.
var replicaSQL = map[string]string{}

func init() {
	replicaSQL[readLogThroughSQL] = replicaGuard(readLogThroughSQL, `number`, `$4`)
	replicaSQL[streamPageCutSQL] = replicaGuard(streamPageCutSQL, `stream COLLATE "C", number`, `$3`)
	replicaSQL[selectivePageCutSQL] = replicaGuard(selectivePageCutSQL, `number`, `$3`)
	replicaSQL[streamEventsThroughSQL] = replicaGuard(streamEventsThroughSQL, `number`, `$5`)
}
