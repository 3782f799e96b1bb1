package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

// BenchmarkTreeGroupCost commits groups shaped like those of make bench's
// append shapes (lone: one event; single: 28 requests of one event in as
// many streams; batch: 8 requests of 100 events) through the appender's
// group path, and reports per event what the tree is measured by: the
// WAL bytes, the heap bytes of fossil_events, the appender's CPU hashing
// (inside the group's critical section) and the process's CPU. Run it
// with and without -tags benchnotree (the same code without the tree
// work) to isolate the tree's share:
//
//	go test -run NONE -bench TreeGroupCost -benchtime 2000x ./store
//	go test -tags benchnotree -run NONE -bench TreeGroupCost -benchtime 2000x ./store
//
// Events are prepared (salt, leaf tail) before the clock runs, as the
// collector does in the request's goroutine.
func BenchmarkTreeGroupCost(b *testing.B) {
	data := `{"pad":"` + strings.Repeat("x", 500-10) + `"}`
	for _, bc := range []struct {
		name           string
		reqs, perReq   int
		eventsPerGroup int
	}{
		{"Lone", 1, 1, 1},
		{"Single28", 28, 1, 28},
		{"Batch8x100", 8, 100, 800},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			ab := setupAppend(b, AppenderConfig{})
			s := ab.store
			cache := newHeadCache()
			mk := func(op int) []*AppendRequest {
				reqs := make([]*AppendRequest, bc.reqs)
				for r := range reqs {
					evs := make([]*fossil.Event, bc.perReq)
					for j := range evs {
						id := fmt.Sprintf("%d-%d-%d", op, r, j)
						evs[j] = &fossil.Event{ID: id, Source: "/fossil-bench", Type: "bench.event",
							Doc: []byte(`{"specversion":"1.0","id":"` + id + `","source":"/fossil-bench","type":"bench.event","datacontenttype":"application/json","data":` + data + `}`)}
						if err := prepareLeaf(evs[j]); err != nil {
							b.Fatal(err)
						}
					}
					reqs[r] = &AppendRequest{Stream: fmt.Sprintf("s%d", (op*bc.reqs+r)%1000), Events: evs}
				}
				return reqs
			}
			// Warm the cache and the plans.
			for op := range 20 {
				if _, _, err := s.appendGroup(ctx, mk(-1-op), true, cache); err != nil {
					b.Fatal(err)
				}
			}
			_, heapBefore := walAndHeap(b, ab)
			var hashed time.Duration
			cpuBefore, pgBefore := processCPU(), backendCPU(b, ab)
			b.ResetTimer()
			for op := range b.N {
				b.StopTimer()
				reqs := mk(op)
				b.StartTimer()
				_, st, err := s.appendGroup(ctx, reqs, true, cache)
				if err != nil {
					b.Fatal(err)
				}
				hashed += st.hashed
			}
			b.StopTimer()
			cpu := processCPU() - cpuBefore
			pgCPU := backendCPU(b, ab) - pgBefore
			_, heapAfter := walAndHeap(b, ab)
			events := float64(b.N * bc.eventsPerGroup)
			// The WAL of a few more groups, each read right after it
			// commits (the shared server recycles its segments quickly).
			var walRecords, walBytes, walEvents int64
			byKind := map[string]int64{}
			for op := b.N; walEvents < 4000; op++ {
				reqs := mk(op)
				from, _ := walAndHeap(b, ab)
				if _, _, err := s.appendGroup(ctx, reqs, true, cache); err != nil {
					b.Fatal(err)
				}
				// pg_walinspect reads only what is flushed: the group's
				// records are, once it has committed synchronously.
				var to string
				var ahead bool
				if err := ab.check.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text, pg_current_wal_flush_lsn() > $1::pg_lsn`, from).Scan(&to, &ahead); err != nil {
					b.Fatal(err)
				}
				if !ahead {
					b.Fatal("the WAL was not flushed at commit: the benchmark needs synchronous_commit (set FOSSIL_TEST_DATABASE_URL to a server with it on)")
				}
				r, n := databaseWAL(b, ab, from, to, byKind)
				walRecords, walBytes, walEvents = walRecords+r, walBytes+n, walEvents+int64(bc.eventsPerGroup)
			}
			for kind, n := range byKind {
				b.Logf("WAL %-40s %7.1f B/event", kind, float64(n)/float64(walEvents))
			}
			b.ReportMetric(float64(walBytes)/float64(walEvents), "WAL-B/event")
			b.ReportMetric(float64(walRecords)/float64(walEvents), "WAL-rec/event")
			b.ReportMetric(float64(heapAfter-heapBefore)/events, "heap-B/event")
			b.ReportMetric(float64(hashed.Nanoseconds())/events, "hash-ns/event")
			b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event") // includes preparing the events
			b.ReportMetric(float64(pgCPU.Nanoseconds())/events, "pg-cpu-ns/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
		})
	}
}

// walAndHeap returns the WAL insert position and the heap size of
// fossil_events.
func walAndHeap(tb testing.TB, ab *appendBundle) (wal string, heap int64) {
	tb.Helper()
	if err := ab.check.QueryRow(context.Background(),
		`SELECT pg_current_wal_insert_lsn()::text, pg_relation_size('fossil_events')`).Scan(&wal, &heap); err != nil {
		tb.Fatal(err)
	}
	return wal, heap
}

// databaseWAL sums the WAL records between two positions that touch this
// database's relations (pg_walinspect; the server is shared, and other
// databases write WAL in the same range), without full-page images, which
// depend on when the last checkpoint ran. Commit records, which name no
// relation, are left out. byKind sums the bytes per relation and record
// type.
func databaseWAL(tb testing.TB, ab *appendBundle, from, to string, byKind map[string]int64) (records, bytes int64) {
	tb.Helper()
	ctx := context.Background()
	if _, err := ab.check.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_walinspect`); err != nil {
		tb.Fatal(err)
	}
	rows, err := ab.check.Query(ctx, `
SELECT coalesce(c.relname, '?') || ' ' || w.record_type, count(*), sum(w.record_length - w.fpi_length)::bigint
FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn) w
LEFT JOIN pg_class c ON c.relfilenode = substring(w.block_ref FROM '/(\d+) fork')::oid
WHERE w.block_ref LIKE '%/' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '/%'
GROUP BY 1`, from, to)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind string
			n, b int64
		)
		if err := rows.Scan(&kind, &n, &b); err != nil {
			tb.Fatal(err)
		}
		records, bytes = records+n, bytes+b
		byKind[kind] += b
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return records, bytes
}

// backendCPU is the CPU time (user and system, from /proc) of the
// PostgreSQL backends connected to this database, other than the one
// asking.
func backendCPU(tb testing.TB, ab *appendBundle) time.Duration {
	tb.Helper()
	rows, err := ab.check.Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var total time.Duration
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			tb.Fatalf("PostgreSQL's CPU time needs the server on this machine: %v", err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * 10 * time.Millisecond // clock ticks of 1/100 s
	}
	return total
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHashTree is the tree's CPU inside a group's critical section:
// the leaf hashes of the group's numbered events and their addition to
// the tree, for groups of the sizes the single and batch shapes of make
// bench commit (28 and 800 events).
func BenchmarkHashTree(b *testing.B) {
	for _, n := range []int{1, 28, 800} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			events := make([]*fossil.Event, n)
			for i := range events {
				id := fmt.Sprintf("%d", i)
				events[i] = &fossil.Event{ID: id, Source: "/fossil-bench", Type: "bench.event",
					Doc: []byte(`{"specversion":"1.0","id":"` + id + `","source":"/fossil-bench","type":"bench.event","datacontenttype":"application/json","data":{"pad":"` + strings.Repeat("x", 490) + `"}}`)}
				if err := prepareLeaf(events[i]); err != nil {
					b.Fatal(err)
				}
			}
			st := &groupState{inserts: events}
			b.ReportAllocs()
			for b.Loop() {
				for i, e := range events {
					e.Number, e.Stream, e.Sequence = st.tree.Size+int64(i)+1, "bench/3a8a7kcq/s17", int64(i+1)
				}
				st.loadedHead = st.tree.Size
				if err := st.hashTree(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
