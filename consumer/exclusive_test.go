package consumer_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// openUntilOK opens path until it is answered 200 (a released name may be
// freed a moment after its holder's connection closed) and returns the
// stream and how long that took. Any answer but 200 or 409 fails the test.
func openUntilOK(t testing.TB, base, path string, timeout time.Duration) (*stream, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		s, res := openStream(t, base, path)
		if s != nil {
			return s, time.Since(start)
		}
		requireProblem(t, res, http.StatusConflict)
		if time.Since(start) > timeout {
			t.Fatalf("%s still 409 after %v: %s", path, timeout, res.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireBusy checks that opening path is answered 409 at once.
func requireBusy(t testing.TB, base, path string) {
	t.Helper()
	s, res := openStream(t, base, path) // the client times out after 15s: never hangs
	if s != nil {
		t.Fatalf("%s%s opened while the name is held", base, path)
	}
	p := requireProblem(t, res, http.StatusConflict)
	if p.Type != "urn:fossil:problem:conflict" {
		t.Errorf("409 type = %q", p.Type)
	}
}

// TestExclusiveAcrossServers runs two servers on one database, as two
// processes: a name is held by one connection in the whole cluster.
func TestExclusiveAcrossServers(t *testing.T) {
	t.Parallel()
	a := testserver.Start(t)
	b := testserver.StartOn(t, a.DBURL)
	a.MustPost(t, "s", testserver.Event{ID: "e1"})
	const path = "/consumer/worker/sse?stream=s"

	held := mustOpenStream(t, a.URL, path)
	if f := held.next(t, 5*time.Second); f.number != 1 {
		t.Fatalf("first frame %d", f.number)
	}
	requireBusy(t, b.URL, path)
	requireBusy(t, a.URL, path)
	for _, srv := range []*testserver.Server{a, b} {
		if st := getStatus(t, srv.URL, "worker"); !st.Connected {
			t.Fatalf("status on %s = %+v, want connected", srv.URL, st)
		}
	}
	// Other names are not affected.
	mustOpenStream(t, b.URL, "/consumer/worker-2/sse?stream=s").kill()

	// A clean disconnect on A frees the name for B.
	held.resp.Body.Close()
	held.kill()
	onB, took := openUntilOK(t, b.URL, path, 5*time.Second)
	t.Logf("name free on the other server %v after a disconnect", took)
	requireBusy(t, a.URL, path)

	// A reset connection on B frees it for A.
	onB.kill()
	onA, took := openUntilOK(t, a.URL, path, 5*time.Second)
	t.Logf("name free on the other server %v after a reset", took)
	// Commits are not tied to the connection: any server takes them.
	mustCommit(t, b.URL, "worker", 1)
	if st := getStatus(t, b.URL, "worker"); !st.Connected || st.Offset != 1 {
		t.Fatalf("status = %+v, want connected at offset 1", st)
	}
	onA.kill()
	waitFor(t, 5*time.Second, "the status to say disconnected", func() bool {
		return !getStatus(t, b.URL, "worker").Connected
	})
}

// TestSIGKILLFreesName runs Fossil as a real child process, connects a
// consumer through it, kills the process with SIGKILL and shows that the
// name is free again within a few seconds (the lease TTL, 5s by default).
func TestSIGKILLFreesName(t *testing.T) {
	t.Parallel()
	local := testserver.Start(t)
	local.MustPost(t, "s", testserver.Event{ID: "e1"})
	child := startChild(t, local.DBURL)
	const path = "/consumer/victim/sse?stream=s"

	held := mustOpenStream(t, child.url, path)
	if f := held.next(t, 10*time.Second); f.number != 1 {
		t.Fatalf("first frame %d", f.number)
	}
	requireBusy(t, local.URL, path)

	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	killed := time.Now()
	<-child.exited
	if !held.ended(5 * time.Second) {
		t.Fatal("the stream through the killed process did not end")
	}
	s, _ := openUntilOK(t, local.URL, path, 10*time.Second)
	t.Logf("name free %v after SIGKILL of its holder (lease TTL 5s)", time.Since(killed).Round(10*time.Millisecond))
	if f := s.next(t, 5*time.Second); f.number != 1 {
		t.Fatalf("first frame after takeover %d", f.number)
	}
}

// child is a fossil server running as a separate process.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	url    string
	out    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startChild builds the fossil binary and runs `fossil server` on dbURL
// (already migrated) on a free port, until the test ends.
func startChild(t *testing.T, dbURL string) *child {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "fossil")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	c := &child{url: "http://" + addr, out: &lockedBuffer{}}
	c.cmd = exec.Command(bin, "server", "--addr", addr, "--no-migrate")
	c.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FOSSIL_LOG_LEVEL=warn")
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	c.exited = make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("fossil child output:\n%s", c.out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		select {
		case <-c.exited:
			t.Fatalf("fossil child exited early:\n%s", c.out.String())
		case <-ctx.Done():
			t.Fatalf("fossil child not ready on %s: %v\n%s", addr, err, c.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestNoLeaks connects and disconnects a consumer 50 times, cleanly and
// with resets, with a rejected second connection each time, and checks
// that pool connections, lease rows and locks are back to the baseline.
func TestNoLeaks(t *testing.T) {
	t.Parallel()
	label := fmt.Sprintf("%p", t)
	var r *rig
	pprof.Do(context.Background(), pprof.Labels(labelKey, label), func(context.Context) {
		r = setupRig(t, time.Second, "")
	})
	r.appendEvents(t, "s", 1)
	const path = "/consumer/cycler/sse?stream=s"
	// Goroutines serving a connection or renewing a lease, and in total.
	requestFuncs := []string{"net/http.(*conn).serve", "consumer.(*Handler).renew"}
	var baseGoroutines int
	waitFor(t, 5*time.Second, "no request goroutines", func() bool {
		total, in := labeledGoroutines(t, label, requestFuncs...)
		baseGoroutines = total
		return in[0] == 0 && in[1] == 0
	})

	type snapshot struct {
		acquired, leases, advisory, idleInTx int64
	}
	snap := func() snapshot {
		return snapshot{
			acquired: int64(r.store.Pool().Stat().AcquiredConns()),
			leases:   r.count(t, `SELECT count(*) FROM fossil_consumer_leases`),
			advisory: r.count(t, `SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
				WHERE l.locktype = 'advisory' AND d.datname = current_database()`),
			idleInTx: r.count(t, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state LIKE 'idle in transaction%'`),
		}
	}
	var base snapshot
	waitFor(t, 5*time.Second, "an idle baseline", func() bool { base = snap(); return base.acquired == 0 })
	if base != (snapshot{}) {
		t.Fatalf("baseline %+v, want all zero", base)
	}
	backends := r.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`)

	retries := 0
	for i := range 50 {
		var s *stream
		for {
			var res response
			s, res = openStream(t, r.url, path)
			if s != nil {
				break
			}
			requireProblem(t, res, http.StatusConflict) // the previous holder is still letting go
			retries++
			if retries > 1000 {
				t.Fatalf("cycle %d: the name is never freed", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if f := s.next(t, 5*time.Second); f.number != 1 {
			t.Fatalf("cycle %d: frame %d", i, f.number)
		}
		requireBusy(t, r.url, path)
		if i%2 == 0 {
			s.resp.Body.Close() // clean close
		}
		s.kill()
	}
	var after snapshot
	waitFor(t, 10*time.Second, "pool, leases and locks back to the baseline", func() bool {
		after = snap()
		return after == base
	})
	var goroutines int
	waitFor(t, 5*time.Second, "goroutines back to the baseline", func() bool {
		total, in := labeledGoroutines(t, label, requestFuncs...)
		goroutines = total
		return in[0] == 0 && in[1] == 0 && total <= baseGoroutines
	})
	t.Logf("server goroutines: %d before, %d after", baseGoroutines, goroutines)
	t.Logf("50 cycles: %d retries while a holder let go; after: %+v; backends %d before, %d after; pool %d total conns",
		retries, after, backends,
		r.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`),
		r.store.Pool().Stat().TotalConns())
	if total := r.store.Pool().Stat().TotalConns(); total > 8 {
		t.Fatalf("pool holds %d connections, more than its max", total)
	}
}

// TestLeaseRenewedWhileConnected holds a stream for several lease TTLs: the
// renewals keep the name taken.
func TestLeaseRenewedWhileConnected(t *testing.T) {
	t.Parallel()
	// Short, but long enough that a renewal (every ttl/3) delayed by a
	// loaded machine running -race does not lose the lease.
	const ttl = time.Second
	r := setupRig(t, ttl, "")
	const path = "/consumer/long/sse?stream=s"
	s := mustOpenStream(t, r.url, path)
	for end := time.Now().Add(7 * ttl / 2); time.Now().Before(end); time.Sleep(ttl / 4) {
		requireBusy(t, r.url, path)
	}
	n := r.appendEvents(t, "s", 1)[0]
	if f := s.next(t, 5*time.Second); f.number != n {
		t.Fatalf("frame %d, want %d", f.number, n)
	}
	if got := r.count(t, `SELECT count(*) FROM fossil_consumer_leases WHERE name = 'long' AND expires_at > now()`); got != 1 {
		t.Fatalf("%d live leases, want 1", got)
	}
	s.kill()
	again, _ := openUntilOK(t, r.url, path, 5*time.Second)
	again.kill()
}

// TestLeaseLostEndsStream takes the lease away from a connected holder (as
// if it had expired and another process took it): the stream ends.
func TestLeaseLostEndsStream(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	r := setupRig(t, ttl, "")
	const path = "/consumer/stolen/sse?stream=s"
	s := mustOpenStream(t, r.url, path)
	waitFor(t, 5*time.Second, "the lease row", func() bool {
		return r.count(t, `SELECT count(*) FROM fossil_consumer_leases WHERE name = 'stolen'`) == 1
	})
	const thief = "00000000-0000-4000-8000-000000000099"
	_, err := r.pool.Exec(context.Background(), `UPDATE fossil_consumer_leases
		SET holder = $1, expires_at = now() + interval '1 second' WHERE name = 'stolen'`, thief)
	if err != nil {
		t.Fatal(err)
	}
	if !s.ended(5 * time.Second) {
		t.Fatal("the stream went on after its lease was taken")
	}
	// The old holder did not delete the thief's lease on its way out.
	if n := r.count(t, `SELECT count(*) FROM fossil_consumer_leases WHERE name = 'stolen' AND holder = $1`, thief); n != 1 {
		t.Fatalf("the thief's lease is gone (%d rows)", n)
	}
	// It is not renewed: it expires and the name is free.
	s2, _ := openUntilOK(t, r.url, path, 10*time.Second)
	s2.kill()
}

// TestCrashedHolderExpires simulates a process that died holding a lease
// (a row nobody renews): the name is refused until it expires, then free.
func TestCrashedHolderExpires(t *testing.T) {
	t.Parallel()
	r := setupRig(t, time.Second, "")
	_, err := r.pool.Exec(context.Background(), `INSERT INTO fossil_consumer_leases (name, holder, expires_at)
		VALUES ('orphan', '00000000-0000-4000-8000-000000000042', now() + interval '700 milliseconds')`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const path = "/consumer/orphan/sse?stream=s"
	requireBusy(t, r.url, path)
	s, took := openUntilOK(t, r.url, path, 5*time.Second)
	s.kill()
	t.Logf("orphaned lease taken over after %v", took)
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("orphaned lease taken over after %v, before it expired", took)
	}
}
