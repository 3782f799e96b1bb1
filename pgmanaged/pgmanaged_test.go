package pgmanaged

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testDir returns a fresh empty directory. As root, t.TempDir's directories
// are 0700, which the postgres user could not enter, so they are opened up.
func testDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// startCluster starts an ephemeral cluster in dataDir and stops it in
// t.Cleanup.
func startCluster(t *testing.T, dataDir string) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), Config{DataDir: dataDir, Ephemeral: true, MaxConnections: 20})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func execSQL(t *testing.T, connURL, sql string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, connURL, sql string) int {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestStart(t *testing.T) {
	t.Parallel()

	t.Run("EphemeralRemovesCreatedDataDir", func(t *testing.T) {
		t.Parallel()
		dataDir := filepath.Join(testDir(t), "a", "pgdata")
		c := startCluster(t, dataDir)
		if got := queryInt(t, c.URL("postgres"), "SELECT 1"); got != 1 {
			t.Fatalf("SELECT 1 = %d", got)
		}
		if got := queryInt(t, c.URL("postgres"), "SELECT current_setting('max_connections')::int"); got != 20 {
			t.Fatalf("max_connections = %d, want 20", got)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
			t.Fatalf("no PG_VERSION: %v", err)
		}
		if err := c.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := c.Stop(); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("data dir still there after Stop: %v", err)
		}
		if _, err := os.Stat(c.socketDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket dir still there after Stop: %v", err)
		}
		if _, err := pgx.Connect(t.Context(), c.URL("postgres")); err == nil {
			t.Fatal("connected after Stop")
		}
	})

	t.Run("PersistsAcrossRestart", func(t *testing.T) {
		t.Parallel()
		dataDir := testDir(t) // exists already, so Stop keeps it
		c := startCluster(t, dataDir)
		execSQL(t, c.URL("postgres"), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
		if err := c.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
			t.Fatalf("data dir not kept: %v", err)
		}

		c = startCluster(t, dataDir)
		if got := queryInt(t, c.URL("postgres"), "SELECT n FROM kept"); got != 42 {
			t.Fatalf("kept.n = %d, want 42", got)
		}
		log, err := os.ReadFile(c.LogFile())
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(log), "database system is ready to accept connections"); n != 2 {
			t.Fatalf("log shows %d starts, want 2", n)
		}
	})

	t.Run("RefusesDataDirInUse", func(t *testing.T) {
		t.Parallel()
		dataDir := testDir(t)
		c := startCluster(t, dataDir)
		_, err := Start(t.Context(), Config{DataDir: dataDir, Ephemeral: true})
		if !errors.Is(err, ErrDataDirInUse) {
			t.Fatalf("second Start on %s: err = %v, want ErrDataDirInUse", dataDir, err)
		}
		// The failed start must leave the running cluster alone.
		if got := queryInt(t, c.URL("postgres"), "SELECT 1"); got != 1 {
			t.Fatalf("SELECT 1 = %d", got)
		}
	})

	t.Run("RefusesFileAsDataDir", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(testDir(t), "file")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Start(t.Context(), Config{DataDir: path, Ephemeral: true}); err == nil {
			t.Fatal("Start on a file succeeded")
		}
	})

	t.Run("RejectsBadBinDir", func(t *testing.T) {
		t.Parallel()
		_, err := Start(t.Context(), Config{DataDir: testDir(t), BinDir: testDir(t)})
		if !errors.Is(err, ErrNoPostgres) {
			t.Fatalf("err = %v, want ErrNoPostgres", err)
		}
	})
}

func TestURL(t *testing.T) {
	t.Parallel()
	c := &Cluster{socketDir: "/tmp/fossil-pg-123"}
	got := c.URL("fossil_test_1")
	want := "postgres://postgres@/fossil_test_1?host=%2Ftmp%2Ffossil-pg-123&port=5432&sslmode=disable"
	if got != want {
		t.Fatalf("URL = %s, want %s", got, want)
	}
	cfg, err := pgx.ParseConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "/tmp/fossil-pg-123" || cfg.Database != "fossil_test_1" || cfg.User != "postgres" || cfg.Port != 5432 {
		t.Fatalf("parsed %+v", cfg.Config)
	}
}

func TestFindBinDir(t *testing.T) {
	t.Parallel()

	noPath := func(string) (string, error) { return "", errors.New("not on PATH") }

	t.Run("BogusEnvIsErrNoPostgres", func(t *testing.T) {
		t.Parallel()
		getenv := func(k string) string {
			if k == EnvBinDir {
				return "/nonexistent/fossil/bin"
			}
			return ""
		}
		_, err := findBinDir(getenv, noPath)
		if !errors.Is(err, ErrNoPostgres) {
			t.Fatalf("err = %v, want ErrNoPostgres", err)
		}
		for _, hint := range []string{"apt-get install postgresql", "brew install postgresql@16", "DATABASE_URL", EnvBinDir} {
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not mention %q", err, hint)
			}
		}
	})

	t.Run("EnvWins", func(t *testing.T) {
		t.Parallel()
		dir := fakeBinDir(t)
		getenv := func(k string) string {
			if k == EnvBinDir {
				return dir
			}
			return ""
		}
		got, err := findBinDir(getenv, noPath)
		if err != nil || got != dir {
			t.Fatalf("findBinDir = %q, %v; want %q", got, err, dir)
		}
	})

	t.Run("FollowsSymlinkOnPath", func(t *testing.T) {
		t.Parallel()
		real := fakeBinDir(t)
		link := filepath.Join(t.TempDir(), "initdb")
		if err := os.Symlink(filepath.Join(real, "initdb"), link); err != nil {
			t.Fatal(err)
		}
		lookPath := func(name string) (string, error) {
			if name == "initdb" {
				return link, nil
			}
			return "", errors.New("not found")
		}
		got, err := findBinDir(func(string) string { return "" }, lookPath)
		if err != nil || got != real {
			t.Fatalf("findBinDir = %q, %v; want %q", got, err, real)
		}
	})

	t.Run("Installed", func(t *testing.T) {
		t.Parallel()
		dir, err := FindBinDir()
		if err != nil {
			t.Fatalf("FindBinDir: %v (the tests need PostgreSQL installed)", err)
		}
		if !hasServerPrograms(dir) {
			t.Fatalf("FindBinDir = %s without initdb and postgres", dir)
		}
	})
}

// fakeBinDir returns a directory holding executable initdb and postgres
// stubs.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"initdb", "postgres"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGlobByVersion(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "10", "17"} {
		if err := os.MkdirAll(filepath.Join(root, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := globByVersion(filepath.Join(root, "*", "bin"), root+"/")
	var versions []string
	for _, p := range got {
		versions = append(versions, filepath.Base(filepath.Dir(p)))
	}
	if want := "17 15 10 9.6"; strings.Join(versions, " ") != want {
		t.Fatalf("order = %v, want %s", versions, want)
	}
}

func TestDefaultDataDir(t *testing.T) {
	t.Parallel()
	dir := DefaultDataDir()
	if !filepath.IsAbs(dir) || filepath.Base(dir) != "pgdata" {
		t.Fatalf("DefaultDataDir = %q", dir)
	}
	if os.Geteuid() == 0 && dir != "/var/lib/fossil/pgdata" {
		t.Fatalf("DefaultDataDir as root = %q", dir)
	}
}
