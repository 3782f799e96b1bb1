package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestBenchCommand runs a short `fossil bench --json` against a real server
// and checks that it wrote events without errors. Its numbers are never
// asserted: benchmarks are not pass/fail.
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbtest.NewDB(t)
	cfg.PprofAddr = "127.0.0.1:0"
	srv := NewServer(cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err != nil {
		_ = srv.Close()
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	var out, errOut bytes.Buffer
	code := run(ctx, []string{"bench", "--url", srv.URL(), "--clients", "4", "--streams", "8", "--duration", "2s",
		"--subscribers", "1", "--replay", "--json"}, &out, &errOut, envOf(nil))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res struct {
		Events          int64            `json:"events"`
		EventsPerSecond float64          `json:"events_per_second"`
		Delivered       int64            `json:"delivered"`
		Errors          map[string]int64 `json:"errors"`
		Replay          struct {
			Events int64 `json:"events"`
		} `json:"replay"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if res.Events <= 0 || res.EventsPerSecond <= 0 || len(res.Errors) != 0 {
		t.Fatalf("events %d (%f/s), errors %v", res.Events, res.EventsPerSecond, res.Errors)
	}
	if res.Delivered != res.Events || res.Replay.Events != res.Events {
		t.Fatalf("delivered %d, replayed %d, want %d each", res.Delivered, res.Replay.Events, res.Events)
	}
	if !strings.Contains(errOut.String(), "events") {
		t.Errorf("no progress line on stderr: %q", errOut.String())
	}

	// The table form.
	out.Reset()
	if code := run(ctx, []string{"bench", "--url", srv.URL(), "--clients", "2", "--events", "20", "--quiet"}, &out, &errOut, envOf(nil)); code != 0 {
		t.Fatalf("table run: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "events/s") || !strings.Contains(out.String(), "errors       none") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestBenchRefusesRemoteTargets(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	code := run(context.Background(), []string{"bench", "--url", "http://192.0.2.1:8080", "--duration", "1s"}, &bytes.Buffer{}, &errOut, envOf(nil))
	if code != 2 || !strings.Contains(errOut.String(), "allow-remote") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

func TestPprofAddrMustBeLoopback(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"", true},
		{"127.0.0.1:6060", true},
		{"localhost:6060", true},
		{"[::1]:6060", true},
		{"0.0.0.0:6060", false},
		{":6060", false},
		{"10.1.2.3:6060", false},
	} {
		cfg := DefaultConfig()
		cfg.PprofAddr = tt.addr
		if err := cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("pprof-addr %q: Validate() = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}
