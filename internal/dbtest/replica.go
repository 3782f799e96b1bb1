package dbtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/migrations"
	"github.com/fossil-events/fossil/pgmanaged"
)

// Replicated is a PostgreSQL primary and a streaming replica of it, both
// private to one test: the primary is a throwaway cluster of its own
// (never the shared test server, whose configuration is not ours to
// change), the replica a copy made with pg_basebackup -R that streams from
// it. Both are [pgmanaged] clusters on private Unix sockets.
type Replicated struct {
	// PrimaryURL and ReplicaURL name the migrated database "fossil" on
	// the primary and on the replica.
	PrimaryURL, ReplicaURL string
	// Primary and Replica are pools on them, for assertions; closed in
	// t.Cleanup.
	Primary, Replica *pgxpool.Pool

	primary, replica *pgmanaged.Cluster
	replicaDir       string
	replicaSocket    string // kept across restarts, so ReplicaURL stays valid
	binDir           string
}

// replicatedDB is the database a [Replicated] pair holds.
const replicatedDB = "fossil"

// NewReplicated starts a primary, migrates a database on it, copies it
// with pg_basebackup -R and starts the copy as a streaming replica. It
// returns once the replica has replayed the migrated schema. Everything is
// stopped and removed in t.Cleanup. It takes a few seconds; a machine
// without the PostgreSQL server programs (initdb, postgres,
// pg_basebackup) fails the test with what to install.
func NewReplicated(t testing.TB) *Replicated {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	binDir, err := pgmanaged.FindBinDir()
	if err != nil {
		t.Fatalf("dbtest: a primary and a replica need the PostgreSQL server programs: %s\n(%v)", noPostgres, err)
	}
	if _, err := os.Stat(filepath.Join(binDir, "pg_basebackup")); err != nil {
		t.Fatalf("dbtest: pg_basebackup is missing from %s (install the PostgreSQL server package, e.g. apt-get install postgresql): %v", binDir, err)
	}
	tmp, err := os.MkdirTemp("", tmpPrefix)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	// As for the shared throwaway cluster: the owner file lets a later run
	// sweep the directory if this binary dies, and postgres (another user
	// when we are root) must be able to enter it.
	if err := os.WriteFile(filepath.Join(tmp, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	r := &Replicated{replicaDir: filepath.Join(tmp, "replica"), binDir: binDir}
	t.Cleanup(func() {
		if r.Primary != nil {
			r.Primary.Close()
		}
		if r.Replica != nil {
			r.Replica.Close()
		}
		var errs []error
		if r.replica != nil {
			errs = append(errs, r.replica.Stop())
		}
		if r.primary != nil {
			errs = append(errs, r.primary.Stop())
		}
		errs = append(errs, os.RemoveAll(tmp))
		if r.replicaSocket != "" {
			errs = append(errs, os.RemoveAll(r.replicaSocket))
		}
		if err := errors.Join(errs...); err != nil {
			t.Errorf("dbtest: stop the primary and the replica: %v", err)
		}
	})

	// The primary: wal_level replica, max_wal_senders and a pg_hba.conf
	// that trusts local replication connections are initdb's defaults.
	r.primary, err = pgmanaged.Start(ctx, pgmanaged.Config{DataDir: filepath.Join(tmp, "pgdata"), BinDir: binDir, Ephemeral: true, MaxConnections: 100})
	if err != nil {
		t.Fatalf("dbtest: start the primary: %v", err)
	}
	conn, err := pgx.Connect(ctx, r.primary.URL("postgres"))
	if err != nil {
		t.Fatalf("dbtest: connect to the primary: %v", err)
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+replicatedDB+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
	_ = conn.Close(ctx)
	if err != nil {
		t.Fatalf("dbtest: create the database on the primary: %v", err)
	}
	r.PrimaryURL = r.primary.URL(replicatedDB)
	if err := migrations.Up(r.PrimaryURL); err != nil {
		t.Fatalf("dbtest: migrate the primary: %v", err)
	}
	if err := r.primary.BaseBackup(ctx, r.replicaDir); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	if r.replicaSocket, err = pgmanaged.NewSocketDir(); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	r.startReplica(t)
	if r.Primary, err = pgxpool.New(ctx, r.PrimaryURL); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	if r.Replica, err = pgxpool.New(ctx, r.ReplicaURL); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	var standby bool
	if err := r.Replica.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil || !standby {
		t.Fatalf("dbtest: the replica is not a standby (in recovery: %v, %v)", standby, err)
	}
	return r
}

// startReplica starts (or restarts) the replica's postgres on its copy.
func (r *Replicated) startReplica(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := pgmanaged.Start(ctx, pgmanaged.Config{DataDir: r.replicaDir, BinDir: r.binDir, Ephemeral: true, MaxConnections: 100, SocketDir: r.replicaSocket})
	if err != nil {
		t.Fatalf("dbtest: start the replica: %v", err)
	}
	r.replica = c
	r.ReplicaURL = c.URL(replicatedDB)
}

// StopReplica stops the replica's postgres (a replica that went down).
// ReplicaURL stays valid: [Replicated.StartReplica] starts it on the same
// socket.
func (r *Replicated) StopReplica(t testing.TB) {
	t.Helper()
	r.Replica.Close()
	if err := r.replica.Stop(); err != nil {
		t.Fatalf("dbtest: stop the replica: %v", err)
	}
}

// StartReplica starts the replica again after [Replicated.StopReplica],
// at the same address; Replica is a new pool.
func (r *Replicated) StartReplica(t testing.TB) {
	t.Helper()
	r.startReplica(t)
	pool, err := pgxpool.New(context.Background(), r.ReplicaURL)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	r.Replica = pool
}

// PauseReplay pauses WAL replay on the replica (pg_wal_replay_pause): it
// keeps receiving WAL but its data stops moving.
func (r *Replicated) PauseReplay(t testing.TB) {
	t.Helper()
	if _, err := r.Replica.Exec(t.Context(), "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatalf("dbtest: pause replay: %v", err)
	}
	// Pausing takes effect at the next record replayed; wait until the
	// replica says it is paused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state string
		if err := r.Replica.QueryRow(t.Context(), "SELECT pg_get_wal_replay_pause_state()").Scan(&state); err != nil {
			t.Fatalf("dbtest: replay pause state: %v", err)
		}
		if state == "paused" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbtest: replay still %q after 10s", state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ResumeReplay resumes WAL replay on the replica.
func (r *Replicated) ResumeReplay(t testing.TB) {
	t.Helper()
	if _, err := r.Replica.Exec(t.Context(), "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatalf("dbtest: resume replay: %v", err)
	}
}

// WaitReplayed waits until the replica's log head (fossil_head) is at
// least head.
func (r *Replicated) WaitReplayed(t testing.TB, head int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int64
		err := r.Replica.QueryRow(t.Context(), "SELECT last_number FROM fossil_head").Scan(&n)
		if err == nil && n >= head {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbtest: the replica's head is %d (error %v) after 30s, want %d", n, err, head)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ReplicaHead returns the replica's log head as replayed.
func (r *Replicated) ReplicaHead(t testing.TB) int64 {
	t.Helper()
	var n int64
	if err := r.Replica.QueryRow(t.Context(), "SELECT last_number FROM fossil_head").Scan(&n); err != nil {
		t.Fatalf("dbtest: replica head: %v", err)
	}
	return n
}

// String names the pair in failure messages.
func (r *Replicated) String() string {
	return fmt.Sprintf("primary %s, replica %s", redact(r.PrimaryURL), redact(r.ReplicaURL))
}

// CPU returns the CPU time (user and system) used so far by the live
// processes of the primary and of the replica: each cluster's postmaster
// and its children. Processes that have exited are not
// counted, so measure while the connections of interest stay open. Linux
// only (/proc); elsewhere both are 0.
func (r *Replicated) CPU() (primary, replica time.Duration) {
	return clusterCPU(r.primary.PID()), clusterCPU(r.replica.PID())
}

// clusterCPU sums utime and stime of the postmaster pid and of its
// children (the backends, each in a session of its own).
func clusterCPU(pid int) time.Duration {
	const ticksPerSecond = 100 // USER_HZ, fixed at 100 in the Linux ABI
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces: fields count from
		// the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
		if len(f) < 13 || (f[1] != strconv.Itoa(pid) && p != "/proc/"+strconv.Itoa(pid)+"/stat") {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / ticksPerSecond
}
