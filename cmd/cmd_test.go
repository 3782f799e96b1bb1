package cmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func envOf(kv map[string]string) envLookup {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c Config)
		err   bool
	}{
		{
			name: "Defaults",
			check: func(t *testing.T, c Config) {
				if c.Addr != "127.0.0.1:8080" || c.SSEKeepalive != 15*time.Second || c.MaxBody != 1<<20 ||
					c.WaitTimeout != 5*time.Second || c.JWTSecret != "" || c.DatabaseURL != "" {
					t.Fatalf("defaults: %+v", c)
				}
			},
		},
		{
			name: "EnvOverridesDefaults",
			env: map[string]string{"FOSSIL_ADDR": ":9000", "DATABASE_URL": "postgres://x/y", "FOSSIL_SSE_KEEPALIVE": "3s",
				"FOSSIL_MAX_BODY": "2097152", "FOSSIL_WAIT_TIMEOUT": "2s", "JWT_SECRET": "s3cret", "JWT_PREVIOUS_SECRET": "old", "JWT_PUBLIC_KEY_FILE": "/k.pem"},
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9000" || c.DatabaseURL != "postgres://x/y" || c.SSEKeepalive != 3*time.Second || c.MaxBody != 2<<20 ||
					c.WaitTimeout != 2*time.Second || c.JWTSecret != "s3cret" || c.JWTPreviousSecret != "old" || c.JWTPublicKeyFile != "/k.pem" {
					t.Fatalf("env: %+v", c)
				}
			},
		},
		{
			name: "FlagsOverrideEnv",
			env:  map[string]string{"FOSSIL_ADDR": ":9000", "FOSSIL_MAX_BODY": "2097152"},
			args: []string{"--addr", ":9100", "--max-body", "3145728", "--sse-keepalive", "1s"},
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9100" || c.MaxBody != 3<<20 || c.SSEKeepalive != time.Second {
					t.Fatalf("flags: %+v", c)
				}
			},
		},
		{name: "BadEnvDuration", env: map[string]string{"FOSSIL_SSE_KEEPALIVE": "soon"}, err: true},
		{name: "BadFlag", args: []string{"--max-body", "12"}, err: true},
		{name: "UnknownFlag", args: []string{"--nope"}, err: true},
		{name: "ExtraArgs", args: []string{"extra"}, err: true},
		{name: "BadLogFormat", args: []string{"--log-format", "xml"}, err: true},
		// How long an SSE client may stop reading before it is disconnected.
		{name: "SSEWriteTimeoutDefault", check: wantSSEWriteTimeout(30 * time.Second)},
		{name: "SSEWriteTimeoutEnv", env: map[string]string{"FOSSIL_SSE_WRITE_TIMEOUT": "5s"}, check: wantSSEWriteTimeout(5 * time.Second)},
		{name: "SSEWriteTimeoutFlagWins", env: map[string]string{"FOSSIL_SSE_WRITE_TIMEOUT": "5s"}, args: []string{"--sse-write-timeout", "2m"}, check: wantSSEWriteTimeout(2 * time.Minute)},
		{name: "SSEWriteTimeoutBadEnv", env: map[string]string{"FOSSIL_SSE_WRITE_TIMEOUT": "later"}, err: true},
		{name: "SSEWriteTimeoutZero", args: []string{"--sse-write-timeout", "0s"}, err: true},
		{name: "SSEWriteTimeoutNegative", args: []string{"--sse-write-timeout", "-1s"}, err: true},
		// Read replicas: one URL, several (commas or repeated flags; a
		// multi-host URL stays one), the flag replacing the environment.
		{name: "ReadReplicasUnset", check: wantReadURLs()},
		{name: "ReadReplicaEnv", env: map[string]string{"DATABASE_URL": "postgres://p/db", "FOSSIL_READ_DATABASE_URL": "postgres://r1/db"}, check: wantReadURLs("postgres://r1/db")},
		{name: "ReadReplicasEnvCommas", env: map[string]string{"DATABASE_URL": "postgres://p/db", "FOSSIL_READ_DATABASE_URL": "postgres://r1/db, postgresql://u:p@r2:5433/db?sslmode=require,postgres://a,b:5433/db"},
			check: wantReadURLs("postgres://r1/db", "postgresql://u:p@r2:5433/db?sslmode=require", "postgres://a,b:5433/db")},
		{name: "ReadReplicasFlagsWin", env: map[string]string{"DATABASE_URL": "postgres://p/db", "FOSSIL_READ_DATABASE_URL": "postgres://r1/db"},
			args: []string{"--read-database-url", "postgres://r2/db", "--read-database-url", "postgres://r3/db,postgres://r4/db"}, check: wantReadURLs("postgres://r2/db", "postgres://r3/db", "postgres://r4/db")},
		{name: "ReadReplicaWithoutPrimary", env: map[string]string{"FOSSIL_READ_DATABASE_URL": "postgres://r1/db"}, err: true},
		{name: "ReadMaxLag", env: map[string]string{"FOSSIL_READ_MAX_LAG": "2m"}, check: func(t *testing.T, c Config) {
			if c.ReadMaxLag != 2*time.Minute {
				t.Fatalf("ReadMaxLag = %s", c.ReadMaxLag)
			}
		}},
		{name: "ReadMaxLagZero", args: []string{"--read-max-lag", "0s"}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig("server", tt.args, io.Discard, envOf(tt.env))
			if tt.err {
				if err == nil {
					t.Fatalf("want an error, got config %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func wantReadURLs(want ...string) func(*testing.T, Config) {
	return func(t *testing.T, c Config) {
		if !slices.Equal(c.ReadDatabaseURLs, want) {
			t.Fatalf("ReadDatabaseURLs = %q, want %q", c.ReadDatabaseURLs, want)
		}
		if c.ReadMaxLag != 30*time.Second {
			t.Fatalf("ReadMaxLag = %s, want the default 30s", c.ReadMaxLag)
		}
	}
}

func wantSSEWriteTimeout(want time.Duration) func(*testing.T, Config) {
	return func(t *testing.T, c Config) {
		if c.SSEWriteTimeout != want {
			t.Fatalf("SSEWriteTimeout = %s, want %s", c.SSEWriteTimeout, want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, io.Discard, envOf(nil)); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "fossil ") {
		t.Fatalf("output %q", out.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard, envOf(nil)); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	url := dbtest.NewDB(t)
	for i := 0; i < 2; i++ {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"migrate", "--database-url", url}, &out, os.Stderr, envOf(nil)); code != 0 {
			t.Fatalf("run %d: exit %d", i, code)
		}
		if !strings.Contains(out.String(), "migration version") {
			t.Fatalf("output %q", out.String())
		}
	}
}

// TestZeroConfigServer runs the server without DATABASE_URL: it must start
// and use a managed PostgreSQL (as the postgres system user when the test
// runs as root, as in CI), accept an event, and stop the cluster on Close.
func TestZeroConfigServer(t *testing.T) {
	t.Parallel()
	// As root PostgreSQL runs as the postgres user, which must be able to
	// enter the data directory's parents (t.TempDir's are 0700).
	dir, err := os.MkdirTemp("", "fossil-zeroconfig-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "pgdata")
	srv := NewServer(cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err != nil {
		_ = srv.Close()
		t.Fatalf("run: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = srv.Close()
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/collect", strings.NewReader(`{"a":1}`))
	req.Header.Set("Fossil-Stream", "zero/config")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", "1")
	req.Header.Set("ce-source", "/t")
	req.Header.Set("ce-type", "t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Fossil-Event-Number") != "1" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	closed = true
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "PG_VERSION")); err != nil {
		t.Fatalf("the managed cluster's data directory is missing: %v", err)
	}
	// The data survives a restart.
	srv2 := NewServer(cfg, nil)
	if err := srv2.Run(ctx); err != nil {
		_ = srv2.Close()
		t.Fatalf("restart: %v", err)
	}
	defer srv2.Close()
	resp, err = http.Get(srv2.URL() + "/events/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"fossilstream":"zero/config"`) {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
}

func TestConfigErrorsWrapSentinel(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.MaxConns = 1
	if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbtest.NewDB(t)
	srv := NewServer(cfg, nil)
	if err := srv.Run(context.Background()); err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	defer srv.Close()
	tests := []struct {
		path   string
		method string
		status int
		allow  string
	}{
		{"/healthz", http.MethodGet, http.StatusOK, ""},
		{"/readyz", http.MethodGet, http.StatusOK, ""},
		{"/nope", http.MethodGet, http.StatusNotFound, ""},
		{"/collect", http.MethodGet, http.StatusMethodNotAllowed, "POST"},
		{"/healthz", http.MethodPost, http.StatusMethodNotAllowed, "GET, HEAD"},
		{"//collect", http.MethodPost, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL()+tt.path, nil)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: status %d allow %q, want %d %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow)
		}
		if tt.status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: content type %q", tt.method, tt.path, resp.Header.Get("Content-Type"))
		}
	}
}
