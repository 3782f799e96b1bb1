package scaleout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

func TestMain(m *testing.M) {
	dbtest.MainWith(m, func() {
		if build.dir != "" {
			_ = os.RemoveAll(build.dir)
		}
	})
}

// root is the repository, two levels up from this package.
const root = "../.."

// maxConns is each process's FOSSIL_MAX_CONNS: small, so that the test
// also checks the connection budget of docs/OPERATIONS.md (the pool, plus
// the appender's two, plus the LISTEN connection, per process).
const maxConns = 6

// TestThreeProcessesOneDatabase runs three `fossil server` processes on one
// database, with writers, SSE subscribers, named consumers and a push
// subscription spread over them, kills one with SIGKILL under load and
// restarts it on the same address. Every acknowledged event is stored once
// with the number it was given, numbers are dense, every SSE subscriber
// (resuming with Last-Event-Id on another process) and every named
// consumer (resuming from its committed offset) ends with every event once
// in order, and the subscription delivers every event at least once, in
// order per stream.
func TestThreeProcessesOneDatabase(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	threeProcesses(t, dbURL, dbURL, nil, 3*(maxConns+3))
}

// TestThreeProcessesThroughPgBouncer is the same scenario with every
// process connected through PgBouncer in transaction mode, as
// docs/OPERATIONS.md ("PgBouncer") says to run it: --poll-only,
// --no-migrate, default_query_exec_mode=exec in the URL, plan_cache_mode
// ignored. PostgreSQL then sees PgBouncer's pool, not the processes'.
func TestThreeProcessesThroughPgBouncer(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	const pool = 8
	bouncerURL := startPgBouncer(t, dbURL, pool)
	threeProcesses(t, dbURL, bouncerURL, []string{
		"FOSSIL_POLL_ONLY=true",
		"FOSSIL_NO_MIGRATE=true", // the template database is migrated
		"FOSSIL_POLL_INTERVAL=100ms",
	}, pool)
}

// threeProcesses runs the scenario on the database at dbURL, the servers
// connecting to serverURL with env added, and fails if PostgreSQL saw more
// than budget connections to the database before the kill.
func threeProcesses(t *testing.T, dbURL, serverURL string, env []string, budget int) {
	bin, built := buildFossil(t)
	begin := time.Now()

	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	procs := make([]*process, 3)
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i] = startProcess(t, bin, serverURL, addr, env)
		}()
	}
	wg.Wait()
	for _, p := range procs {
		if p == nil {
			t.FailNow() // startProcess reported why
		}
	}
	url := func(i int) string { return "http://" + addrs[i%3] }

	// A push subscription, created on the first process; any of the three
	// may hold its lease.
	wh := newWebhook(t)
	createSubscription(t, hc, url(0), wh.URL)

	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	readCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()

	l := &ledger{acked: map[string]int64{}}
	writers := runWriters(ctx, hc, url, 6, l)
	var readers []*follower
	for i := range 3 {
		readers = append(readers, follow(readCtx, url, i, ""))
	}
	consumers := []*follower{follow(readCtx, url, 1, "billing"), follow(readCtx, url, 2, "audit")}
	conns := sampleConnections(readCtx, t, dbURL)

	time.Sleep(3 * time.Second)
	beforeKill := conns.max()
	killedAt := l.count()
	procs[1].kill() // the process the "billing" consumer and one SSE subscriber started on
	time.Sleep(time.Second)
	procs[1] = startProcess(t, bin, serverURL, addrs[1], env)
	time.Sleep(3 * time.Second)
	stopLoad()
	writers.Wait()

	head := headOf(t, dbURL)
	n := verifyLog(t, dbURL, l)
	if int64(n) != head {
		t.Fatalf("the head is %d but the log holds %d events", head, n)
	}
	if killedAt == 0 || n <= killedAt {
		t.Fatalf("no load across the kill: %d events acknowledged before it, %d in all", killedAt, n)
	}
	all := append(slices.Clone(readers), consumers...)
	testserver.Eventually(t, 45*time.Second, fmt.Sprintf("every reader at the head %d", head), func() bool {
		for _, f := range all {
			if f.last() < head {
				return false
			}
		}
		return wh.distinct() >= int(head)
	})
	stopReaders()
	for _, f := range all {
		f.wait()
	}

	for _, f := range all {
		f.check(t, head)
	}
	wh.check(t, head)
	reconnects := 0
	for _, f := range all {
		reconnects += f.reconnects()
	}
	if reconnects == 0 {
		t.Fatal("no reader lost its connection at the kill: the test proved nothing about resuming")
	}
	l.mu.Lock()
	retried, dups := l.retried, l.duplicates
	l.mu.Unlock()
	if retried == 0 {
		t.Fatal("the kill cut no write: the test proved nothing about retries")
	}
	if beforeKill > budget {
		t.Fatalf("%d connections to the database under load, more than the budget of %d", beforeKill, budget)
	}
	t.Logf("%d events from 6 writers over 3 processes, %d acknowledged before the SIGKILL; %d requests retried after it (%d answered as duplicates); %d reader reconnects; at most %d database connections before the kill (budget %d), %d in all; build %s, the scenario %s",
		n, killedAt, retried, dups, reconnects, beforeKill, budget, conns.max(), built.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}

// build is the server binary, built once for the package's tests.
var build struct {
	once     sync.Once
	dir, bin string
	took     time.Duration
	err      error
}

// buildFossil builds the server from this tree into a temporary directory
// (removed by TestMain), once; it returns the binary and how long the
// build took.
func buildFossil(t *testing.T) (string, time.Duration) {
	t.Helper()
	build.once.Do(func() {
		begin := time.Now()
		defer func() { build.took = time.Since(begin) }()
		if build.dir, build.err = os.MkdirTemp("", "fossil-scaleout-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "fossil")
		cmd := exec.Command("go", "build", "-o", build.bin, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin, build.took
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process is one `fossil server`.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProcess runs the server on addr and waits until /readyz answers
// 200. It is called from several goroutines, so it reports with t.Error.
func startProcess(t *testing.T, bin, dbURL, addr string, env []string) *process {
	logf, err := os.CreateTemp(t.TempDir(), "server-*.log")
	if err != nil {
		t.Error(err)
		return nil
	}
	cmd := exec.Command(bin, "server")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"FOSSIL_ADDR="+addr,
		"FOSSIL_LOG_LEVEL=warn",
		"FOSSIL_MAX_CONNS="+strconv.Itoa(maxConns),
		"FOSSIL_SUBSCRIPTION_LEASE=2s",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return nil
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("server %s log:\n%s", addr, b)
		}
		_ = logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(logf.Name())
			t.Errorf("server %s exited at start:\n%s", addr, b)
			return nil
		default:
		}
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				http.DefaultClient.CloseIdleConnections()
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("server %s was not ready within 60s", addr)
	return nil
}

// kill ends the process at once, as a crash would.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// ledger records every acknowledged event of the writers.
type ledger struct {
	mu         sync.Mutex
	acked      map[string]int64 // CloudEvent id → event number
	renumbered []string
	retried    int // requests sent again after an error or a 503
	duplicates int // retries answered as duplicates
	unexpected []string
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// runWriters runs n writers until ctx ends. Writer w sends its k-th event
// to process (w+k) mod 3, and retries it (same id, same content) on the
// next process until it is answered 200, even after ctx ends, so that the
// ledger knows the fate of every event it sent.
func runWriters(ctx context.Context, hc *http.Client, url func(int) string, n int, l *ledger) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				id := fmt.Sprintf("w%d-%d", w, k)
				body := fmt.Sprintf(`{"w":%d,"k":%d}`, w, k)
				for try := 0; ; try++ {
					num, dup, err := post(hc, url(w+k+try), fmt.Sprintf("scale/%d", w%4), id, body)
					if err == nil {
						l.mu.Lock()
						if prev, ok := l.acked[id]; ok && prev != num {
							l.renumbered = append(l.renumbered, id)
						}
						l.acked[id] = num
						if try > 0 {
							l.retried++
							if dup {
								l.duplicates++
							}
						}
						l.mu.Unlock()
						break
					}
					if !errors.Is(err, errRetry) {
						l.mu.Lock()
						l.unexpected = append(l.unexpected, err.Error())
						l.mu.Unlock()
						return
					}
					if try > 400 {
						l.mu.Lock()
						l.unexpected = append(l.unexpected, id+": no answer after 400 tries")
						l.mu.Unlock()
						return
					}
					time.Sleep(25 * time.Millisecond)
				}
			}
		}()
	}
	return &wg
}

var errRetry = errors.New("not confirmed: retry")

// post sends one binary-mode event and returns its number.
func post(hc *http.Client, base, stream, id, body string) (num int64, dup bool, err error) {
	req, err := http.NewRequest(http.MethodPost, base+"/collect", strings.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	h := req.Header
	h.Set("Fossil-Stream", stream)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", "/scaleout")
	h.Set("ce-type", "scaleout.event")
	h.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %v", errRetry, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		num, err = strconv.ParseInt(res.Header.Get("Fossil-Event-Number"), 10, 64)
		return num, res.Header.Get("Fossil-Duplicate") == "true", err
	case http.StatusServiceUnavailable:
		return 0, false, errRetry
	default:
		return 0, false, fmt.Errorf("POST %s/collect %s: %d %s", base, id, res.StatusCode, b)
	}
}

// follower reads every event from the start: over /sse, or as a named
// consumer over /consumer/{name}/sse, committing its offset as it goes.
// When its connection ends it moves to the next process and resumes: the
// SSE subscriber with Last-Event-Id, the consumer from its committed
// offset (which the server knows).
type follower struct {
	name string // consumer name, "" for /sse
	done chan struct{}

	mu        sync.Mutex
	seen      []int64 // numbers in arrival order (a consumer keeps only those it had not processed)
	ids       map[int64]string
	redeliver int      // events a consumer got again after resuming (not yet committed when it lost its connection)
	problems  []string // gaps, disorder, a resume that skipped past the committed offset
	drops     int
	committed int64 // the last offset the server confirmed (204)
}

func follow(ctx context.Context, url func(int) string, first int, consumer string) *follower {
	f := &follower{name: consumer, done: make(chan struct{}), ids: map[int64]string{}}
	go func() {
		defer close(f.done)
		// Each follower has its own transport, so that closing it ends its
		// connections and leaves no goroutine behind.
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		for i := first; ctx.Err() == nil; i++ {
			f.once(ctx, hc, url(i))
			if ctx.Err() == nil {
				f.mu.Lock()
				f.drops++
				f.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return f
}

func (f *follower) last() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return 0
	}
	return f.seen[len(f.seen)-1]
}

func (f *follower) reconnects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drops
}

func (f *follower) wait() { <-f.done }

// once reads one connection until it ends.
func (f *follower) once(ctx context.Context, hc *http.Client, base string) {
	target := base + "/sse?stream=%7B%2Ball%7D"
	if f.name != "" {
		target = base + "/consumer/" + f.name + "/sse?stream=%7B%2Ball%7D"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	last := int64(0)
	if len(f.seen) > 0 {
		last = f.seen[len(f.seen)-1]
	}
	committed := f.committed
	f.mu.Unlock()
	if f.name == "" && last > 0 {
		req.Header.Set("Last-Event-Id", strconv.FormatInt(last, 10))
	}
	res, err := hc.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		// A consumer's name is still held by a killed process (409) until
		// its lease expires; another process is tried next.
		return
	}
	first := true
	lastCommit := time.Now()
	_ = testserver.ReadFrames(res.Body, func(fr testserver.Frame) error {
		n := fr.Number()
		id, _ := fr.Event["id"].(string)
		f.mu.Lock()
		defer f.mu.Unlock()
		if first && f.name != "" {
			// The server resumes after the committed offset, which is at
			// least the last one it confirmed and at most what was
			// processed.
			if n < committed+1 || n > last+1 {
				f.problems = append(f.problems, fmt.Sprintf("resumed at %d, committed %d, processed %d", n, committed, last))
			}
		}
		first = false
		prev := int64(0)
		if len(f.seen) > 0 {
			prev = f.seen[len(f.seen)-1]
		}
		switch {
		case n == prev+1:
			f.seen = append(f.seen, n)
			f.ids[n] = id
		case f.name != "" && n <= prev:
			f.redeliver++ // at-least-once: already processed, skipped by its number
		default:
			f.problems = append(f.problems, fmt.Sprintf("%d after %d", n, prev))
			f.seen = append(f.seen, n)
		}
		if f.name != "" && time.Since(lastCommit) > 50*time.Millisecond {
			lastCommit = time.Now()
			off := f.seen[len(f.seen)-1]
			f.mu.Unlock()
			ok := commit(ctx, hc, base, f.name, off)
			f.mu.Lock()
			if ok && off > f.committed {
				f.committed = off
			}
		}
		return nil
	}, nil)
}

// commit stores a consumer's offset and reports whether it was confirmed.
func commit(ctx context.Context, hc *http.Client, base, name string, off int64) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/consumer/"+name+"/commit", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Last-Event-Id", strconv.FormatInt(off, 10))
	res, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusNoContent
}

// check fails unless the follower got 1..head, each once, in order.
func (f *follower) check(t *testing.T, head int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	what := "SSE subscriber"
	if f.name != "" {
		what = "consumer " + f.name
	}
	if len(f.problems) > 0 {
		t.Fatalf("%s: %s", what, strings.Join(f.problems, "; "))
	}
	if int64(len(f.seen)) != head {
		t.Fatalf("%s got %d events, want %d", what, len(f.seen), head)
	}
	for i, n := range f.seen {
		if n != int64(i+1) {
			t.Fatalf("%s: event %d at position %d", what, n, i+1)
		}
	}
}

// sampler counts the database's connections every 50 ms.
type sampler struct {
	mu   sync.Mutex
	peak int
}

func (s *sampler) max() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func sampleConnections(ctx context.Context, t *testing.T, dbURL string) *sampler {
	conn, err := pgx.Connect(ctx, dbtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	s := &sampler{}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, cfg.Database).Scan(&n); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, n)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return s
}

func headOf(t *testing.T, dbURL string) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var head int64
	if err := conn.QueryRow(context.Background(), `SELECT last_number FROM fossil_head`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	return head
}

// verifyLog checks the log against the ledger: numbers dense from 1, every
// CloudEvent id once, every acknowledged event stored with its number.
func verifyLog(t *testing.T, dbURL string, l *ledger) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.unexpected) > 0 {
		t.Fatalf("writers got unexpected answers: %s", strings.Join(l.unexpected, "; "))
	}
	if len(l.renumbered) > 0 {
		t.Fatalf("retries answered with another number: %v", l.renumbered)
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT number, id FROM fossil_events ORDER BY number`)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]int64{}
	var n int64
	for rows.Next() {
		var num int64
		var id string
		if err := rows.Scan(&num, &id); err != nil {
			t.Fatal(err)
		}
		n++
		if num != n {
			t.Fatalf("hole or disorder: event %d at position %d", num, n)
		}
		if _, dup := byID[id]; dup {
			t.Fatalf("event id %s stored twice", id)
		}
		byID[id] = num
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id, num := range l.acked {
		got, ok := byID[id]
		if !ok {
			t.Fatalf("acknowledged event %s (number %d) is lost", id, num)
		}
		if got != num {
			t.Fatalf("acknowledged event %s was numbered %d, is stored as %d", id, num, got)
		}
	}
	if len(byID) != len(l.acked) {
		t.Fatalf("%d events stored, %d acknowledged: every writer retries until it is answered, so they must match", len(byID), len(l.acked))
	}
	return int(n)
}

// webhook is the push subscription's sink: it records the first delivery
// of each event (at-least-once: a takeover may repeat some).
type webhook struct {
	*httptest.Server
	mu      sync.Mutex
	first   map[int64]bool
	streams map[string][]int64 // first deliveries per stream, in arrival order
	repeats int
}

func newWebhook(t *testing.T) *webhook {
	wh := &webhook{first: map[int64]bool{}, streams: map[string][]int64{}}
	wh.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions { // the webhook validation handshake
			w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
			w.WriteHeader(http.StatusOK)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		n, _ := strconv.ParseInt(r.Header.Get("Ce-Fossileventnumber"), 10, 64)
		stream := r.Header.Get("Ce-Fossilstream")
		wh.mu.Lock()
		if wh.first[n] {
			wh.repeats++
		} else {
			wh.first[n] = true
			wh.streams[stream] = append(wh.streams[stream], n)
		}
		wh.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(wh.Close)
	return wh
}

func (wh *webhook) distinct() int {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return len(wh.first)
}

func (wh *webhook) check(t *testing.T, head int64) {
	t.Helper()
	wh.mu.Lock()
	defer wh.mu.Unlock()
	for n := int64(1); n <= head; n++ {
		if !wh.first[n] {
			t.Fatalf("subscription: event %d never delivered", n)
		}
	}
	if int64(len(wh.first)) != head {
		t.Fatalf("subscription: %d distinct events delivered, want %d", len(wh.first), head)
	}
	for stream, ns := range wh.streams {
		if !slices.IsSorted(ns) {
			t.Fatalf("subscription: stream %s delivered out of order: %v", stream, ns)
		}
	}
	t.Logf("subscription: %d events delivered, %d again after a takeover", head, wh.repeats)
}

func createSubscription(t *testing.T, hc *http.Client, base, sink string) {
	t.Helper()
	body := fmt.Sprintf(`{"protocol":"HTTP","sink":%q,"config":{"startafter":"0"}}`, sink)
	res, err := hc.Post(base+"/subscriptions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create subscription: %d %s", res.StatusCode, b)
	}
}

// startPgBouncer runs PgBouncer in transaction mode in front of the
// database at dbURL, with a server pool of pool connections, and returns
// the URL the servers use through it. As root it runs as the postgres
// user (PgBouncer refuses root), who owns the throwaway cluster's socket.
func startPgBouncer(t *testing.T, dbURL string, pool int) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("pgbouncer is not installed: apt-get install pgbouncer (bash .ci/test installs it)")
		}
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "fossil-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d user=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
max_client_conn = 500
ignore_startup_parameters = plan_cache_mode,enable_seqscan,jit
pidfile =
`, cfg.Host, cfg.Port, cfg.User, port, pool)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "pgbouncer.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, iniPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PgBouncer needs the user postgres: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("pgbouncer log:\n%s", b)
		}
		_ = logf.Close()
	})
	u := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&default_query_exec_mode=cache_describe", cfg.User, addr, cfg.Database)
	testserver.Eventually(t, 10*time.Second, "pgbouncer answering", func() bool {
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("pgbouncer exited:\n%s", b)
		default:
		}
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		return conn.Ping(context.Background()) == nil
	})
	return u
}
