// Package dbtest gives every test its own PostgreSQL database, cloned from a
// template that was migrated once. Import it only from _test.go files.
//
// Each package that uses it calls [Main] from its TestMain:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
//
// # Which server
//
// When FOSSIL_TEST_DATABASE_URL is set, the tests use that server; the
// database named in the URL is the maintenance database, where the helper
// creates and drops the others (the role needs CREATEDB). Otherwise [Main]
// starts a throwaway cluster with [pgmanaged] (the same code as the
// zero-config `fossil server`) in a temporary directory, shared by all the
// tests of the binary and removed at the end. If neither is possible the run
// fails and says what to install; it never skips.
//
// # Databases
//
// The template is named fossil_tpl_<hash of the migration files>, so a
// changed migration gets a fresh template while an unchanged one is reused
// across runs on a long-lived server. Concurrent test binaries serialise its
// creation with an advisory lock. [NewDB] clones it with CREATE DATABASE …
// TEMPLATE, which takes milliseconds, and drops the clone when the test
// passed; when it failed the database is kept and its URL logged.
//
// Set FOSSIL_TEST_KEEP_CLUSTER=1 to keep the throwaway cluster's data
// directory after a failed run, for inspection.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/fossil-events/fossil/migrations"
	"github.com/fossil-events/fossil/pgmanaged"
)

const (
	// EnvDatabaseURL names the variable that points the tests at an
	// existing server instead of a throwaway cluster.
	EnvDatabaseURL = "FOSSIL_TEST_DATABASE_URL"

	// EnvKeepCluster, when set to a non-empty value, keeps the throwaway
	// cluster's data directory after a failed run.
	EnvKeepCluster = "FOSSIL_TEST_KEEP_CLUSTER"

	noPostgres = "no PostgreSQL for tests: install PostgreSQL (apt-get install postgresql) " +
		"so the tests can start a throwaway cluster, or set " + EnvDatabaseURL + "=postgres://user@host:5432/postgres"

	// objectInUse is SQLSTATE 55006: CREATE DATABASE … TEMPLATE while a
	// session is still connected to the template.
	objectInUse = "55006"

	// tmpPrefix starts the names of throwaway cluster directories under
	// os.TempDir; ownerFile in them holds the pid of the test binary.
	tmpPrefix = "fossil-dbtest-"
	ownerFile = "owner.pid"

	setupTimeout  = 2 * time.Minute
	createRetries = 10
)

// The server chosen by Main. adminURL is written once, before m.Run, and
// only read afterwards.
var (
	adminURL string

	tplOnce sync.Once
	tplName string
	errTpl  error

	adminMu   sync.Mutex
	adminPool *pgxpool.Pool // lazily opened; closed by Main
)

// Main sets up the test server, runs the tests, stops the throwaway cluster
// if it started one, checks for leaked goroutines when the tests passed, and
// exits. Call it from TestMain; it does not return.
func Main(m *testing.M) {
	os.Exit(run(m, nil))
}

// MainWith is [Main] with a function run after the tests and before the
// check for leaked goroutines, to release what the package's tests share
// (a browser, say).
func MainWith(m *testing.M, after func()) {
	os.Exit(run(m, after))
}

func run(m *testing.M, after func()) int {
	flag.Parse() // for testing.Verbose
	teardown, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	code := m.Run()
	if after != nil {
		after()
	}
	if err := teardown(code != 0); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: leaked goroutines after the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// setup picks the server and returns the function that releases it.
func setup() (teardown func(failed bool) error, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, fmt.Errorf("%s must be a postgres:// URL, got %q", EnvDatabaseURL, redact(raw))
		}
		if err := ping(ctx, raw); err != nil {
			return nil, fmt.Errorf("%s: cannot use %s=%s: %w", noPostgres, EnvDatabaseURL, redact(raw), err)
		}
		adminURL = raw
		return func(bool) error { return closeAdminPool() }, nil
	}

	binDir, err := pgmanaged.FindBinDir()
	if err != nil {
		return nil, fmt.Errorf("%s\n(%w)", noPostgres, err)
	}
	begin := time.Now()
	sweepStale()
	tmp, err := os.MkdirTemp("", tmpPrefix)
	if err != nil {
		return nil, fmt.Errorf("%s\n(throwaway cluster: %w)", noPostgres, err)
	}
	// The owner file lets a later run remove this directory if this
	// binary dies without its teardown (a -timeout panic, SIGKILL).
	if err := os.WriteFile(filepath.Join(tmp, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("%s\n(throwaway cluster: %w)", noPostgres, err)
	}
	// As root, postgres runs as the postgres user, which must be able to
	// enter the directory (MkdirTemp makes it 0700).
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("%s\n(throwaway cluster: %w)", noPostgres, err)
	}
	dataDir := filepath.Join(tmp, "pgdata")
	c, err := pgmanaged.Start(ctx, pgmanaged.Config{DataDir: dataDir, BinDir: binDir, Ephemeral: true})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("%s\n(throwaway cluster in %s: %w)", noPostgres, dataDir, err)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "dbtest: throwaway PostgreSQL cluster started in %s (%s)\n",
			time.Since(begin).Round(time.Millisecond), dataDir)
	}
	adminURL = c.URL("postgres")
	return func(failed bool) error {
		errs := []error{closeAdminPool(), c.Stop()}
		if failed && os.Getenv(EnvKeepCluster) != "" {
			fmt.Fprintf(os.Stderr, "dbtest: kept the throwaway cluster in %s; start it with %s -D %s -k %s -c listen_addresses=\n",
				dataDir, filepath.Join(binDir, "postgres"), dataDir, tmp)
			return errors.Join(errs...)
		}
		errs = append(errs, os.RemoveAll(tmp))
		return errors.Join(errs...)
	}, nil
}

// sweepStale removes the throwaway clusters of test binaries that died
// without their teardown. postgres itself stopped when they died (Linux
// parent-death signal), and each cluster takes some 40 MB.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tmpPrefix+"*")) // constant, valid pattern
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue // too young: its owner may not have written the owner file yet
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(dir, "pgdata", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(pidFile), "\n")
			if pgPID, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && processAlive(pgPID) {
				continue // its postgres still runs (no parent-death signal on this system)
			}
		}
		_ = os.RemoveAll(dir) // best effort
	}
}

// processAlive reports whether a process with this pid may exist; when in
// doubt it says yes, so nothing in use is removed.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	defer p.Release()
	err = p.Signal(syscall.Signal(0))
	return !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}

// AdminURL returns the URL of the maintenance database ("postgres" on the
// throwaway cluster) of the test server. It is empty before [Main] runs.
func AdminURL() string {
	return adminURL
}

// NewDB creates a fresh database cloned from the migrated template and
// returns its postgres:// URL. The database is dropped in t.Cleanup when the
// test passed; when it failed it is kept and its URL logged.
func NewDB(t testing.TB) string {
	t.Helper()
	if adminURL == "" {
		t.Fatal("dbtest: no test server: call dbtest.Main(m) from the package's TestMain")
	}
	tpl, err := template()
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	pool, err := maintenancePool()
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	name := "fossil_test_" + rand.Text()[:16]
	name = strings.ToLower(name)
	if err := createDB(t.Context(), pool, name, tpl); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	dbURL := databaseURL(name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dbtest: kept database %s of the failed test: %s", name, dbURL)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// NewPool returns a pool on a database from [NewDB]. The pool is closed in
// t.Cleanup, before the database is dropped.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dbURL := NewDB(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("dbtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatalf("dbtest: ping %s: %v", dbURL, err)
	}
	return pool
}

// createDB clones tpl into name, retrying while a lingering session still
// occupies the template.
func createDB(ctx context.Context, pool *pgxpool.Pool, name, tpl string) error {
	sql := "CREATE DATABASE " + ident(name) + " TEMPLATE " + ident(tpl)
	for attempt := 1; ; attempt++ {
		_, err := pool.Exec(ctx, sql)
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != objectInUse || attempt == createRetries {
			return fmt.Errorf("create database %s from %s: %w", name, tpl, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create database %s from %s: %w", name, tpl, err)
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// template returns the name of the migrated template, creating it on the
// first call.
func template() (string, error) {
	tplOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		tplName, errTpl = ensureTemplate(ctx)
	})
	return tplName, errTpl
}

// ensureTemplate creates and migrates the template database unless a
// complete one exists. A session advisory lock on the maintenance database
// serialises test binaries sharing a server.
func ensureTemplate(ctx context.Context) (string, error) {
	name, err := templateName()
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // also releases the lock

	sum := sha256.Sum256([]byte("fossil dbtest template " + name))
	key := int64(binary.BigEndian.Uint64(sum[:8]))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return "", fmt.Errorf("template %s: lock: %w", name, err)
	}

	var isTemplate bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&isTemplate)
	switch {
	case err == nil && isTemplate:
		return name, nil
	case err == nil:
		// Left half-made by a binary that died while holding the lock.
		if _, err := conn.Exec(ctx, "DROP DATABASE "+ident(name)+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("template %s: drop incomplete: %w", name, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("template %s: %w", name, err)
	}

	// template0 and locale C give the same collation on every server,
	// whatever its defaults.
	create := "CREATE DATABASE " + ident(name) + " TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
	if _, err := conn.Exec(ctx, create); err != nil {
		return "", fmt.Errorf("template %s: create: %w", name, err)
	}
	// migrations.Up closes its connections before returning.
	if err := migrations.Up(databaseURL(name)); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	// No connections: nobody can occupy the template and block a clone.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return "", fmt.Errorf("template %s: mark: %w", name, err)
	}
	return name, nil
}

// templateName hashes the names and contents of the migration files.
func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	return "fossil_tpl_" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// maintenancePool returns the shared pool on the maintenance database.
func maintenancePool() (*pgxpool.Pool, error) {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminPool != nil {
		return adminPool, nil
	}
	pool, err := pgxpool.New(context.Background(), adminURL)
	if err != nil {
		return nil, fmt.Errorf("admin pool: %w", err)
	}
	adminPool = pool
	return pool, nil
}

func closeAdminPool() error {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminPool != nil {
		adminPool.Close()
		adminPool = nil
	}
	return nil
}

// databaseURL is adminURL with the database replaced.
func databaseURL(name string) string {
	u, err := url.Parse(adminURL)
	if err != nil {
		panic(fmt.Sprintf("dbtest: admin url: %v", err)) // validated by setup
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func ping(ctx context.Context, connURL string) error {
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

func ident(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
