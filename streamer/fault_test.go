package streamer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
	"github.com/fossil-events/fossil/migrations"
	"github.com/fossil-events/fossil/pgmanaged"
)

// TestListenConnectionKilled terminates the server's LISTEN connection with
// pg_terminate_backend while a subscriber is connected. The fallback poll
// is set to an hour, so only the notifier's reconnect (which re-LISTENs and
// wakes everyone, covering notifications lost while it was down) can deliver
// in time. Events committed while the listener was down and after it came
// back all arrive, in order, without restarting the server.
func TestListenConnectionKilled(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.PollInterval = time.Hour })
	client := newClient(t)
	sub := srv.OpenSSE(t, ssePath("kill/{id}"))

	n := 0
	postN := func(count int) {
		t.Helper()
		for range count {
			n++
			mustOK(t, "post", post(client, srv.URL, "kill/1", fmt.Sprintf("k%d", n), `{}`))
		}
	}
	postN(3)
	wantRange(t, "before the kill", frameNumbers(sub.Next(t, 3, 10*time.Second)), 1, 3)

	kill := func() uint32 {
		t.Helper()
		pid := srv.ListenerPID()
		if pid == 0 {
			t.Fatal("the server has no LISTEN connection")
		}
		var killed bool
		if err := srv.Pool.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, int64(pid)).Scan(&killed); err != nil || !killed {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
		}
		return pid
	}
	reconnected := func(old uint32) {
		t.Helper()
		testserver.Eventually(t, 10*time.Second, "a new LISTEN connection", func() bool {
			p := srv.ListenerPID()
			return p != 0 && p != old
		})
	}

	// Writes racing with the reconnect.
	pid := kill()
	from := n + 1
	postN(3)
	reconnected(pid)
	postN(3)
	wantRange(t, "writes during and after the reconnect", frameNumbers(sub.Next(t, 6, 10*time.Second)), int64(from), int64(n))

	// A notification lost for sure: an event committed without NOTIFY is
	// delivered by the wake-up that follows the reconnect, before anything
	// else is written.
	n++
	silent := insertSilently(t, srv.Pool, "kill/1", fmt.Sprintf("k%d", n))
	pid = kill()
	reconnected(pid)
	wantRange(t, "event whose notification was lost", frameNumbers(sub.Next(t, 1, 10*time.Second)), silent, silent)
	postN(3)
	wantRange(t, "after the second reconnect", frameNumbers(sub.Next(t, 3, 10*time.Second)), silent+1, int64(n))

	late := srv.OpenSSE(t, ssePath("kill/{id}"))
	wantRange(t, "new subscriber", frameNumbers(late.Next(t, n, 10*time.Second)), 1, int64(n))
	sub.Quiet(t, 100*time.Millisecond)
}

// TestPollOnlyDelivers runs a server without LISTEN (for PgBouncer
// transaction pooling): subscribers are served from the poll alone, also
// events written by another process.
func TestPollOnlyDelivers(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) {
		c.PollOnly = true
		c.PollInterval = 50 * time.Millisecond
	})
	if pid := srv.ListenerPID(); pid != 0 {
		t.Fatalf("a poll-only server has a LISTEN connection (pid %d)", pid)
	}
	writer := testserver.StartOn(t, srv.DBURL, func(c *cmd.Config) { c.PollOnly = true })
	sub := srv.OpenSSE(t, ssePath("poll/{id}"))
	client := newClient(t)
	for i := 1; i <= 10; i++ {
		target := srv.URL
		if i%2 == 0 {
			target = writer.URL
		}
		mustOK(t, "post", post(client, target, "poll/1", fmt.Sprintf("p%d", i), `{}`))
		wantRange(t, fmt.Sprintf("event %d", i), frameNumbers(sub.Next(t, 1, 10*time.Second)), int64(i), int64(i))
	}
}

// TestPostgresRestart stops the whole PostgreSQL server under a running
// Fossil and starts it again on the same data directory. It needs a cluster
// of its own (the shared test cluster cannot be restarted under the tests
// running in parallel), reached through a symlink so that the database URL
// stays valid although each start gets a new socket directory. While the
// database is down, POSTs fail with 503 and never claim success; afterwards
// the notifier reconnects, writes succeed again and a subscriber that kept
// resuming receives every stored event exactly once, in order.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	binDir, err := pgmanaged.FindBinDir()
	if err != nil {
		t.Fatalf("PostgreSQL programs are needed (apt-get install postgresql): %v", err)
	}
	tmp, err := os.MkdirTemp("", "fossil-restart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	// As root, postgres runs as the postgres user, which must be able to
	// enter the directory; MkdirTemp makes it 0700.
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	// Created here, so that Stop of the Ephemeral cluster keeps it.
	dataDir := filepath.Join(tmp, "pgdata")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "sock")

	var (
		mu      sync.Mutex
		cluster *pgmanaged.Cluster
	)
	start := func() {
		t.Helper()
		c, err := pgmanaged.Start(ctx, pgmanaged.Config{DataDir: dataDir, BinDir: binDir, Ephemeral: true, MaxConnections: 60})
		if err != nil {
			t.Fatalf("start postgres: %v", err)
		}
		u, err := url.Parse(c.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		// Point the stable link at the new socket directory atomically.
		tmpLink := link + ".new"
		_ = os.Remove(tmpLink)
		if err := os.Symlink(u.Query().Get("host"), tmpLink); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmpLink, link); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		cluster = c
		mu.Unlock()
	}
	stop := func() {
		t.Helper()
		mu.Lock()
		c := cluster
		cluster = nil
		mu.Unlock()
		if c != nil {
			if err := c.Stop(); err != nil {
				t.Errorf("stop postgres: %v", err)
			}
		}
	}
	start()
	t.Cleanup(stop) // registered before the server's cleanup, so it runs after it

	q := url.Values{"host": {link}, "port": {"5432"}, "sslmode": {"disable"}}
	dbURL := (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres", RawQuery: q.Encode()}).String()
	if err := migrations.Up(dbURL); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	srv := testserver.StartOn(t, dbURL, func(c *cmd.Config) { c.AppendTimeout = 5 * time.Second })
	client := newClient(t)
	follow := startFollower(t, srv.URL, ssePath("restart/{id}"), followerOpts{dense: true})

	stored := 0
	postOK := func(count int) {
		t.Helper()
		for range count {
			stored++
			id := fmt.Sprintf("r%d", stored)
			// Right after the restart the pool may still hand out a dead
			// connection: a 503 is retried (the same id, so a retry of an
			// event that was in fact stored is a duplicate, not a new one).
			testserver.Eventually(t, 30*time.Second, "post "+id+" to succeed", func() bool {
				r := post(client, srv.URL, "restart/1", id, `{}`)
				if r.err == nil && r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
					t.Fatalf("post %s: status %d: %s", id, r.status, r.body)
				}
				return r.err == nil && r.status == http.StatusOK
			})
		}
	}
	postOK(5)
	follow.waitFor(t, 5, 10*time.Second)
	pid := srv.ListenerPID()

	stop()
	for i := range 3 {
		r := post(client, srv.URL, "restart/1", fmt.Sprintf("down%d", i), `{}`)
		if r.err != nil || r.status != http.StatusServiceUnavailable {
			t.Fatalf("post while PostgreSQL is down: status %d, err %v: %s", r.status, r.err, r.body)
		}
	}
	start()

	postOK(5)
	testserver.Eventually(t, 30*time.Second, "the notifier to reconnect", func() bool {
		p := srv.ListenerPID()
		return p != 0 && p != pid
	})
	postOK(5)
	follow.waitFor(t, int64(stored), 30*time.Second)
	follow.stop()
	wantRange(t, "resuming subscriber", follow.numbers(), 1, int64(stored))
	late := srv.OpenSSE(t, ssePath("restart/{id}"))
	wantRange(t, "new subscriber", frameNumbers(late.Next(t, stored, 10*time.Second)), 1, int64(stored))

	// The events refused during the outage were never stored.
	var n int
	if err := srv.Pool.QueryRow(context.Background(), `SELECT count(*) FROM fossil_events WHERE id LIKE 'down%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("events posted during the outage in the log: %d (%v)", n, err)
	}
}
