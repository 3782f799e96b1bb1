package cmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestExitCodes: 0 success, 1 runtime failure, 2 usage or configuration.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"NoCommand", nil, nil, 2},
		{"UnknownCommand", []string{"frobnicate"}, nil, 2},
		{"Help", []string{"help"}, nil, 0},
		{"ServerHelp", []string{"server", "-h"}, nil, 0},
		{"Version", []string{"version"}, nil, 0},
		{"UnknownFlag", []string{"server", "--nope"}, nil, 2},
		{"BadFlagValue", []string{"server", "--max-conns", "many"}, nil, 2},
		{"OutOfRange", []string{"server", "--max-conns", "1"}, nil, 2},
		{"BadEnv", []string{"server"}, map[string]string{"FOSSIL_SSE_KEEPALIVE": "soon"}, 2},
		{"ExtraArgument", []string{"migrate", "now"}, nil, 2},
		{"MigrateHasNoServerFlags", []string{"migrate", "--addr", "127.0.0.1:1"}, nil, 2},
		{"BenchBadFlag", []string{"bench", "--clients", "x"}, nil, 2},
		{"BenchRemote", []string{"bench", "--url", "http://192.0.2.1:8080"}, nil, 2},
		{"HealthcheckBadFlag", []string{"healthcheck", "--nope"}, nil, 2},
		{"HealthcheckDown", []string{"healthcheck", "--url", "http://127.0.0.1:1/healthz"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if got := run(context.Background(), tt.args, io.Discard, &stderr, envOf(tt.env)); got != tt.want {
				t.Fatalf("fossil %s: exit %d, want %d\n%s", strings.Join(tt.args, " "), got, tt.want, stderr.String())
			}
		})
	}
}

func TestUsageDocumentsExitCodes(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	run(context.Background(), []string{"--help"}, &out, io.Discard, envOf(nil))
	for _, want := range []string{"0 success", "1 a runtime failure", "2 a usage or configuration error", "fossil healthcheck"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("fossil --help does not say %q:\n%s", want, out.String())
		}
	}
}

// TestMigrateHelp: fossil migrate lists only the flags it uses.
func TestMigrateHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"migrate", "-h"}, io.Discard, &stderr, envOf(nil)); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stderr.String()
	for _, want := range []string{"-database-url", "-data-dir", "-log-level", "-log-format"} {
		if !strings.Contains(help, want) {
			t.Errorf("migrate -h lacks %s:\n%s", want, help)
		}
	}
	for _, unwanted := range []string{"-addr", "-jwt-secret", "-sse-keepalive", "-max-conns"} {
		if strings.Contains(help, unwanted) {
			t.Errorf("migrate -h lists the server's %s:\n%s", unwanted, help)
		}
	}
}

func TestVersionOf(t *testing.T) {
	t.Parallel()
	setting := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"Module", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"Commit", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: setting("vcs.revision", "0123456789abcdef0123", "vcs.modified", "false")}, "dev+0123456789ab"},
		{"Dirty", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: setting("vcs.revision", "0123456789abcdef0123", "vcs.modified", "true")}, "dev+0123456789ab.dirty"},
		{"Nothing", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, tt := range tests {
		if got := versionOf(&tt.bi); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestSecretsFromFilesAndAliases: *_FILE variants and FOSSIL_ aliases.
func TestSecretsFromFilesAndAliases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := file("secret", "s3cret-from-file\n")
	prev := file("prev", "previous")
	dbURL := file("db", "postgres://u:p@127.0.0.1:5432/db\n")
	empty := file("empty", "\n")
	tests := []struct {
		name          string
		env           map[string]string
		args          []string
		secret, prev  string
		db, publicKey string
		wantConfigErr bool
	}{
		{name: "File", env: map[string]string{"JWT_SECRET_FILE": secret, "FOSSIL_JWT_PREVIOUS_SECRET_FILE": prev, "DATABASE_URL_FILE": dbURL},
			secret: "s3cret-from-file", prev: "previous", db: "postgres://u:p@127.0.0.1:5432/db"},
		{name: "Alias", env: map[string]string{"FOSSIL_JWT_SECRET": "a", "FOSSIL_JWT_PUBLIC_KEY_FILE": "/k.pem"}, secret: "a", publicKey: "/k.pem"},
		{name: "AliasAgrees", env: map[string]string{"FOSSIL_JWT_SECRET": "a", "JWT_SECRET": "a"}, secret: "a"},
		{name: "FlagWins", env: map[string]string{"JWT_SECRET_FILE": secret}, args: []string{"--jwt-secret", "f"}, secret: "f"},
		{name: "AliasDisagrees", env: map[string]string{"FOSSIL_JWT_SECRET": "a", "JWT_SECRET": "b"}, wantConfigErr: true},
		{name: "ValueAndFile", env: map[string]string{"JWT_SECRET": "a", "JWT_SECRET_FILE": secret}, wantConfigErr: true},
		{name: "MissingFile", env: map[string]string{"JWT_SECRET_FILE": filepath.Join(dir, "nope")}, wantConfigErr: true},
		{name: "EmptyFile", env: map[string]string{"JWT_SECRET_FILE": empty}, wantConfigErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig("server", tt.args, io.Discard, envOf(tt.env))
			if tt.wantConfigErr {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want a configuration error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.JWTSecret != tt.secret || cfg.JWTPreviousSecret != tt.prev || cfg.DatabaseURL != tt.db || cfg.JWTPublicKeyFile != tt.publicKey {
				t.Fatalf("secret %q previous %q database %q key %q", cfg.JWTSecret, cfg.JWTPreviousSecret, cfg.DatabaseURL, cfg.JWTPublicKeyFile)
			}
		})
	}
}

// TestBusyPortFailsBeforePostgres: a taken port is reported before a
// managed cluster is created.
func TestBusyPortFailsBeforePostgres(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := DefaultConfig()
	cfg.Addr = l.Addr().String()
	cfg.DataDir = filepath.Join(t.TempDir(), "pgdata")
	srv := NewServer(cfg, nil)
	err = srv.Run(context.Background())
	_ = srv.Close()
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("err = %v, want a listen error", err)
	}
	if _, statErr := os.Stat(cfg.DataDir); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("the data directory was created before the port was checked: %v", statErr)
	}
}

// TestRequestIDHealthcheckBuildInfo runs one server for the request id, the
// healthcheck command and the build-info metric.
func TestRequestIDHealthcheckBuildInfo(t *testing.T) {
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

	get := func(path, requestID string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL()+path, nil)
		if requestID != "" {
			req.Header.Set(HeaderRequestID, requestID)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t.Run("RequestID", func(t *testing.T) {
		seen := map[string]bool{}
		for _, tt := range []struct{ path, sent, want string }{
			{"/healthz", "", ""},
			{"/nope", "", ""},
			{"/healthz", "abc-123", "abc-123"},
			{"/collect", "from-proxy", "from-proxy"}, // a 405 carries it too
			{"/healthz", "has space", ""},
			{"/healthz", strings.Repeat("x", 129), ""},
		} {
			res := get(tt.path, tt.sent)
			res.Body.Close()
			got := res.Header.Get(HeaderRequestID)
			switch {
			case tt.want != "" && got != tt.want:
				t.Errorf("%s with %q: X-Request-Id %q, want %q", tt.path, tt.sent, got, tt.want)
			case tt.want == "" && (len(got) != 26 || seen[got]):
				t.Errorf("%s with %q: X-Request-Id %q, want a new 26-character id", tt.path, tt.sent, got)
			}
			seen[got] = true
		}
	})
	t.Run("Healthcheck", func(t *testing.T) {
		var stderr bytes.Buffer
		if code := run(context.Background(), []string{"healthcheck"}, io.Discard, &stderr,
			envOf(map[string]string{"FOSSIL_ADDR": strings.TrimPrefix(srv.URL(), "http://")})); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if code := run(context.Background(), []string{"healthcheck", "--url", srv.URL() + "/nope"}, io.Discard, &stderr, envOf(nil)); code != 1 {
			t.Fatalf("healthcheck of a 404: exit %d", code)
		}
	})
	t.Run("BuildInfo", func(t *testing.T) {
		res := get("/metrics", "")
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := `fossil_build_info{goversion="` + runtime.Version() + `",version="` + Version() + `"} 1`
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	})
}

// TestRequestIDInLogs: a record logged with a request's context names it.
func TestRequestIDInLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := newLogger(Config{LogLevel: "info", LogFormat: "json"}, &buf)
	var handled bool
	h := withRequestID(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "inside")
		handled = true
	}))
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(HeaderRequestID, "req-42")
	h.ServeHTTP(discardWriter{header: http.Header{}}, req)
	logger.With(slog.String("k", "v")).InfoContext(context.Background(), "outside")
	if !handled || !strings.Contains(buf.String(), `"msg":"inside","request_id":"req-42"`) {
		t.Fatalf("log: %s", buf.String())
	}
	if strings.Count(buf.String(), "request_id") != 1 {
		t.Fatalf("a record without a request names one: %s", buf.String())
	}
}

type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}
