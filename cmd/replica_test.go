package cmd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

// underTest is the application_name of the servers' connections in
// TestReadReplicaServesCatchUp, so that the test can wait for them to end
// (a backend reports its statistics when it exits).
const underTest = "fossil-under-test"

// TestReadReplicaServesCatchUp: a server with a real streaming replica
// (pg_basebackup -R) whose replay is paused while events are appended: a
// subscriber from 0 gets every event once, in order; the replica served
// the prefix it holds: for a read of the prefix (GET /events) the
// replica's statistics of fossil_events move by at least the prefix and
// the primary's not at all; for the SSE replay the primary's move by no
// more than the events the replica lacks; and the metrics say which
// database served what.
func TestReadReplicaServesCatchUp(t *testing.T) {
	pair := dbtest.NewReplicated(t)
	const prefix, rest = 2000, 300
	opts := func(c *cmd.Config) {
		c.ReadDatabaseURLs = []string{pair.ReplicaURL + "&application_name=" + underTest}
		c.ReadMaxLag = time.Hour // paused for as long as the test takes, and still read
	}
	primaryURL := pair.PrimaryURL + "&application_name=" + underTest

	writer := testserver.StartOn(t, primaryURL, opts)
	postBatches(t, writer, 0, prefix)
	pair.WaitReplayed(t, prefix)
	pair.PauseReplay(t)
	postBatches(t, writer, prefix, rest)
	if got := pair.ReplicaHead(t); got != prefix {
		t.Fatalf("the paused replica's head is %d, want %d", got, prefix)
	}
	if err := writer.Close(); err != nil {
		t.Fatal(err)
	}

	primaryStats := statsConn(t, pair.PrimaryURL)
	replicaStats := statsConn(t, pair.ReplicaURL)
	waitGone(t, primaryStats, replicaStats)
	p0, r0 := readStats(t, primaryStats), readStats(t, replicaStats)

	// A second process reads the prefix the replica holds, page by page
	// (GET /events): the replica serves all of it, the primary none.
	reader := startWithReplica(t, primaryURL, opts, prefix, rest)
	var after int64
	for after < prefix {
		resp, err := http.Get(fmt.Sprintf("%s/events?after=%d&limit=1000", reader.URL, after))
		if err != nil {
			t.Fatal(err)
		}
		var page []map[string]any
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(page) != 1000 {
			t.Fatalf("GET /events?after=%d: %d, %d events, %v", after, resp.StatusCode, len(page), err)
		}
		for i, e := range page {
			if n, _ := e["fossileventnumber"].(float64); int64(n) != after+int64(i)+1 {
				t.Fatalf("GET /events?after=%d: event %v at %d", after, e["fossileventnumber"], i)
			}
		}
		after += 1000
	}
	if pages, events := reader.Store().PrimaryReads(); pages != 0 || events != 0 {
		t.Fatalf("the primary served %d pages, %d events of the prefix", pages, events)
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, primaryStats, replicaStats)
	p1, r1 := readStats(t, primaryStats), readStats(t, replicaStats)
	pd, rd := p1.sub(p0), r1.sub(r0)
	t.Logf("GET /events of the %d events the paused replica holds: fossil_events tuples read: replica %d, primary %d; "+
		"pg_stat_database: replica tup_fetched %d tup_returned %d blocks %d, primary tup_fetched %d tup_returned %d blocks %d",
		prefix, rd.eventTuples, pd.eventTuples, rd.tupFetched, rd.tupReturned, rd.blocks, pd.tupFetched, pd.tupReturned, pd.blocks)
	if rd.eventTuples < prefix || pd.eventTuples != 0 {
		t.Errorf("a read of the prefix read %d tuples of fossil_events on the replica, %d on the primary; want at least %d and 0", rd.eventTuples, pd.eventTuples, prefix)
	}
	if rd.tupFetched+rd.tupReturned < prefix {
		t.Errorf("the replica's pg_stat_database counters moved by %d tuples for a read of its %d events", rd.tupFetched+rd.tupReturned, prefix)
	}

	// A third replays the whole log from 0 over SSE while the replica is
	// still paused, 300 events behind: every event once, in order.
	reader = startWithReplica(t, primaryURL, opts, prefix, rest)
	sse := reader.OpenSSE(t, "/sse?stream=%7B%2Ball%7D")
	frames := sse.Next(t, prefix+rest, 60*time.Second)
	for i, f := range frames {
		if f.Number() != int64(i+1) {
			t.Fatalf("frame %d is event %s, want %d", i, f.ID, i+1)
		}
		if want := fmt.Sprintf("e%d", i+1); f.Event["id"] != want {
			t.Fatalf("event %d has id %v, want %s", i+1, f.Event["id"], want)
		}
	}
	sse.Quiet(t, 200*time.Millisecond) // nothing twice
	sse.Close()

	metrics := scrape(t, reader)
	for _, want := range []string{
		`fossil_db_page_read_events_total{database="primary"} ` + fmt.Sprint(rest),
		`fossil_read_replica_in_use{reason="",replica=`,
		`fossil_read_replica_behind_events{replica=`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(metrics, "fossil_db_page_read|fossil_read_replica"))
		}
	}
	replicaLine := false
	for _, line := range strings.Split(grepLines(metrics, "fossil_db_page_read_events_total"), "\n") {
		if strings.Contains(line, `database="unix:`) && strings.HasSuffix(line, " "+fmt.Sprint(prefix)) {
			replicaLine = true
		}
	}
	if !replicaLine {
		t.Errorf("no replica served %d events:\n%s", prefix, grepLines(metrics, "fossil_db_page_read"))
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, primaryStats, replicaStats)
	p2, r2 := readStats(t, primaryStats), readStats(t, replicaStats)
	pd, rd = p2.sub(p1), r2.sub(r1)
	t.Logf("SSE replay of %d events (%d on the paused replica): fossil_events tuples read: replica %d, primary %d; "+
		"pg_stat_database: replica tup_fetched %d tup_returned %d blocks %d, primary tup_fetched %d tup_returned %d blocks %d",
		prefix+rest, prefix, rd.eventTuples, pd.eventTuples, rd.tupFetched, rd.tupReturned, rd.blocks, pd.tupFetched, pd.tupReturned, pd.blocks)
	if rd.eventTuples < prefix {
		t.Errorf("the replica read %d tuples of fossil_events for a replay of its %d events", rd.eventTuples, prefix)
	}
	if pd.eventTuples > rest+50 {
		t.Errorf("the primary read %d tuples of fossil_events for a replay whose first %d events the replica holds (%d after them)", pd.eventTuples, prefix, rest)
	}
}

// startWithReplica starts a server with opts and waits until it reads the
// replica, which holds prefix events and lacks rest.
func startWithReplica(t *testing.T, dbURL string, opts func(*cmd.Config), prefix, rest int64) *testserver.Server {
	t.Helper()
	srv := testserver.StartOn(t, dbURL, opts)
	testserver.Eventually(t, 10*time.Second, "the replica in use", func() bool {
		s := srv.Store().ReplicaStatuses()
		return len(s) == 1 && s[0].InUse && s[0].Replayed == prefix && s[0].Behind == rest
	})
	return srv
}

// postBatches appends n events e<from+1>… in batches of 100.
func postBatches(t testing.TB, srv *testserver.Server, from, n int) {
	t.Helper()
	for n > 0 {
		batch := min(n, 100)
		var b strings.Builder
		b.WriteByte('[')
		for i := range batch {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"e%d","source":"/replica","type":"t","data":{"n":%d,"pad":%q}}`, from+i+1, from+i+1, strings.Repeat("x", 200))
		}
		b.WriteByte(']')
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/collect", strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		req.Header.Set("Fossil-Stream", fmt.Sprintf("orders/%d", from%7))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("collect: %d %s", resp.StatusCode, body)
		}
		from += batch
		n -= batch
	}
}

func scrape(t *testing.T, srv *testserver.Server) string {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// grepLines returns the lines of s that contain any of the |-separated
// words.
func grepLines(s, words string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, w := range strings.Split(words, "|") {
			if strings.Contains(line, w) && !strings.HasPrefix(line, "#") {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// statsConn connects for statistics, under another application name.
func statsConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url+"&application_name=fossil-test-stats")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// waitGone waits until no backend of the servers under test is left, so
// that their statistics are reported.
func waitGone(t *testing.T, conns ...*pgx.Conn) {
	t.Helper()
	testserver.Eventually(t, 20*time.Second, "the servers' backends to exit", func() bool {
		for _, c := range conns {
			var n int
			if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", underTest).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return false
			}
		}
		return true
	})
}

type dbStats struct {
	eventTuples                     int64 // fossil_events: tuples read by index and sequential scans
	tupFetched, tupReturned, blocks int64 // pg_stat_database
}

func (a dbStats) sub(b dbStats) dbStats {
	return dbStats{a.eventTuples - b.eventTuples, a.tupFetched - b.tupFetched, a.tupReturned - b.tupReturned, a.blocks - b.blocks}
}

func readStats(t *testing.T, c *pgx.Conn) dbStats {
	t.Helper()
	var s dbStats
	// A fresh snapshot of the statistics for every call.
	if _, err := c.Exec(t.Context(), "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	err := c.QueryRow(t.Context(), `
SELECT (SELECT coalesce(idx_tup_fetch, 0) + seq_tup_read FROM pg_stat_user_tables WHERE relname = 'fossil_events'),
       d.tup_fetched, d.tup_returned, d.blks_hit + d.blks_read
FROM pg_stat_database d WHERE d.datname = current_database()`).Scan(&s.eventTuples, &s.tupFetched, &s.tupReturned, &s.blocks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// BenchmarkReplayFromReplica replays a log of FOSSIL_BENCH_REPLAY_EVENTS
// events (default 100,000 of ~330 bytes) from 0 over SSE ({+all}), through
// a server reading the primary only, one reading a caught-up streaming
// replica, and one reading a replica whose replay is paused 10 % short of
// the head (the rest from the primary, across the seam). It reports the
// replay rate and the CPU time the primary's and the replica's PostgreSQL
// processes spent per replay. Everything shares the machine, so compare
// the lines of one run.
//
//	go test -run NONE -bench BenchmarkReplayFromReplica -benchtime 5x ./cmd/
func BenchmarkReplayFromReplica(b *testing.B) {
	total := 100_000
	if v := os.Getenv("FOSSIL_BENCH_REPLAY_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("FOSSIL_BENCH_REPLAY_EVENTS=%q: want a number of at least 1000", v)
		}
		total = n
	}
	behind := total / 10
	pair := dbtest.NewReplicated(b)
	writer := testserver.StartOn(b, pair.PrimaryURL)
	postBatches(b, writer, 0, total-behind)
	pair.WaitReplayed(b, int64(total-behind))
	pair.PauseReplay(b)
	postBatches(b, writer, total-behind, behind)

	replay := func(b *testing.B, srv *testserver.Server) {
		b.Helper()
		resp, err := http.Get(srv.URL + "/sse?stream=%7B%2Ball%7D")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReaderSize(resp.Body, 1<<20)
		want := fmt.Sprintf("id: %d\n", total)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatalf("replay ended before event %d: %v", total, err)
			}
			if line == want {
				return
			}
		}
	}
	run := func(name string, paused bool, opts ...func(*cmd.Config)) {
		b.Run(name, func(b *testing.B) {
			if !paused {
				pair.ResumeReplay(b)
				pair.WaitReplayed(b, int64(total))
			}
			srv := testserver.StartOn(b, pair.PrimaryURL, opts...)
			if len(opts) > 0 {
				want := int64(total)
				if paused {
					want = int64(total - behind)
				}
				testserver.Eventually(b, 10*time.Second, "the replica in use", func() bool {
					s := srv.Store().ReplicaStatuses()
					return len(s) == 1 && s[0].InUse && s[0].Replayed == want
				})
			}
			replay(b, srv) // warm the caches and the pools
			p0, r0 := pair.CPU()
			b.ResetTimer()
			for b.Loop() {
				replay(b, srv)
			}
			b.StopTimer()
			p1, r1 := pair.CPU()
			pages, events := srv.Store().PrimaryReads()
			b.Logf("%s: the primary served %d page reads (%d events); replicas: %+v", name, pages, events, srv.Store().ReplicaStatuses())
			n := float64(b.N)
			b.ReportMetric(float64(total)*n/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64((p1-p0).Milliseconds())/n, "primary-cpu-ms/replay")
			b.ReportMetric(float64((r1-r0).Milliseconds())/n, "replica-cpu-ms/replay")
			b.ReportMetric(0, "ns/op")
			_ = srv.Close()
		})
	}
	withReplica := func(c *cmd.Config) {
		c.ReadDatabaseURLs = []string{pair.ReplicaURL}
		c.ReadMaxLag = time.Hour
	}
	run("paused-replica-10pc-behind", true, withReplica)
	run("primary", false)
	run("replica", false, withReplica)
}
