package cmd

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestHealthcheckReady: `fossil healthcheck --ready` checks /readyz, which
// with authentication on needs a token, taken from --token or
// FOSSIL_TOKEN; one that grants only metrics is enough (the Kubernetes
// readiness probe of deploy/kubernetes uses such a token).
func TestHealthcheckReady(t *testing.T) {
	t.Parallel()
	const secret = "a-healthcheck-secret-of-32-bytes!!"
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbtest.NewDB(t)
	cfg.JWTSecret = secret
	srv := NewServer(cfg, nil)
	if err := srv.Run(context.Background()); err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	defer srv.Close()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "probe", "fossil": map[string]any{"metrics": true}}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL(), "http://")
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"HealthzNeedsNoToken", []string{"healthcheck"}, map[string]string{"FOSSIL_ADDR": addr}, 0},
		{"ReadyWithoutToken", []string{"healthcheck", "--ready"}, map[string]string{"FOSSIL_ADDR": addr}, 1},
		{"ReadyTokenFromEnv", []string{"healthcheck", "--ready"}, map[string]string{"FOSSIL_ADDR": addr, "FOSSIL_TOKEN": tok}, 0},
		{"ReadyTokenFlag", []string{"healthcheck", "--ready", "--token", tok}, map[string]string{"FOSSIL_ADDR": addr}, 0},
		{"ReadyBadToken", []string{"healthcheck", "--ready", "--token", tok + "x"}, map[string]string{"FOSSIL_ADDR": addr}, 1},
		{"URLWithToken", []string{"healthcheck", "--url", srv.URL() + "/readyz", "--token", tok}, nil, 0},
		{"ReadyAndURL", []string{"healthcheck", "--ready", "--url", srv.URL() + "/readyz"}, nil, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), tt.args, io.Discard, &stderr, envOf(tt.env)); code != tt.want {
				t.Fatalf("exit %d, want %d: %s", code, tt.want, stderr.String())
			}
		})
	}
}
