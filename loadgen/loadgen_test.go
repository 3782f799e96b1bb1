package loadgen_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
	"github.com/fossil-events/fossil/loadgen"
)

// TestMain gives every test its own database (see internal/dbtest) and
// checks for leaked goroutines.
func TestMain(m *testing.M) { dbtest.Main(m) }

func TestCheckTarget(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		url         string
		allowRemote bool
		wantErr     error
	}{
		{"http://127.0.0.1:8080", false, nil},
		{"http://127.8.9.10:8080/base", false, nil},
		{"http://localhost:8080", false, nil},
		{"http://[::1]:8080", false, nil},
		{"https://127.0.0.1", false, nil},
		{"http://10.0.0.1:8080", false, loadgen.ErrRemoteTarget},
		{"http://192.168.1.2", false, loadgen.ErrRemoteTarget},
		{"http://example.com", false, loadgen.ErrRemoteTarget},
		{"http://0.0.0.0:8080", false, loadgen.ErrRemoteTarget},
		{"http://example.com", true, nil},
		{"ftp://127.0.0.1", false, loadgen.ErrInvalidConfig},
		{"127.0.0.1:8080", false, loadgen.ErrInvalidConfig},
		{"http://", false, loadgen.ErrInvalidConfig},
	} {
		_, err := loadgen.CheckTarget(tt.url, tt.allowRemote)
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("CheckTarget(%q, %v) = %v, want %v", tt.url, tt.allowRemote, err, tt.wantErr)
		}
	}
}

func TestRunRefusesRemoteTarget(t *testing.T) {
	t.Parallel()
	_, err := loadgen.Run(t.Context(), loadgen.Config{URL: "http://192.0.2.1:8080", Clients: 1, Duration: time.Second})
	if !errors.Is(err, loadgen.ErrRemoteTarget) {
		t.Fatalf("err = %v, want ErrRemoteTarget", err)
	}
}

// TestSmokeRun runs every phase of a short bench against a real server.
func TestSmokeRun(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	var progress strings.Builder
	res, err := loadgen.Run(t.Context(), loadgen.Config{
		URL:             srv.URL,
		Clients:         4,
		Streams:         16,
		Duration:        2 * time.Second,
		Subscribers:     2,
		IdleSubscribers: 5,
		Replay:          true,
		Progress:        &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events <= 0 || res.Requests != res.Events {
		t.Errorf("events %d, requests %d", res.Events, res.Requests)
	}
	if n := res.ErrorCount(); n != 0 {
		t.Errorf("%d errors: %v (first: %s)", n, res.Errors, res.FirstError)
	}
	if res.Append.Count != uint64(res.Requests) || res.Append.P50 <= 0 || res.Append.P99 < res.Append.P50 {
		t.Errorf("append latency %+v", res.Append)
	}
	if res.Delivered != 2*res.Events || res.DeliveryExpected != res.Delivered {
		t.Errorf("delivered %d of %d, want 2×%d", res.Delivered, res.DeliveryExpected, res.Events)
	}
	if res.Delivery.P50 <= 0 {
		t.Errorf("delivery latency %+v", res.Delivery)
	}
	if res.Replay == nil || res.Replay.Events != res.Events || res.Replay.Head != res.Events || res.Replay.EventsPerSecond <= 0 {
		t.Errorf("replay %+v, want %d events", res.Replay, res.Events)
	}
	if res.Idle == nil || res.Idle.Open != 5 || res.Idle.Failed != 0 {
		t.Errorf("idle %+v", res.Idle)
	}
	if !strings.Contains(progress.String(), "5 idle subscribers open") {
		t.Errorf("progress output %q", progress.String())
	}
	var table strings.Builder
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"events/s", "p99", "replay", "errors       none"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["events"].(float64) != float64(res.Events) {
		t.Errorf("JSON events = %v", back["events"])
	}
}

// TestSmokeBatchesWithExpectedSequences posts batches with expected
// sequences to streams the writers own, up to an event budget.
func TestSmokeBatchesWithExpectedSequences(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	res, err := loadgen.Run(t.Context(), loadgen.Config{
		URL:            srv.URL,
		Clients:        4,
		Batch:          10,
		Streams:        8,
		DataBytes:      100,
		ExpectSequence: true,
		Events:         400,
		Duration:       30 * time.Second,
		Rate:           2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 400 || res.Requests != 40 {
		t.Errorf("events %d in %d requests, want 400 in 40", res.Events, res.Requests)
	}
	if n := res.ErrorCount(); n != 0 {
		t.Errorf("%d errors: %v (first: %s)", n, res.Errors, res.FirstError)
	}
	// 400 events at 2000/s take at least ~0.2s.
	if res.Seconds < 0.15 {
		t.Errorf("rate limit ignored: %d events in %.3fs", res.Events, res.Seconds)
	}
}

// TestSmokeHotStreamExpectedSequenceConflicts shows that writers racing on
// one stream with expected sequences get 409s, which are reported.
func TestSmokeHotStreamExpectedSequenceConflicts(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	res, err := loadgen.Run(t.Context(), loadgen.Config{
		URL: srv.URL, Clients: 8, Streams: 1, ExpectSequence: true, Events: 200, Duration: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events == 0 || res.Errors["409"] == 0 || res.Events+res.Errors["409"] != 200 {
		t.Errorf("events %d, errors %v: want successes and 409s adding up to 200", res.Events, res.Errors)
	}
}

// TestSmokeGRPC: writers over CollectStream, pipelined, with expected
// sequences on their own streams, then a replay over Subscribe; every
// event is acknowledged once and read back.
func TestSmokeGRPC(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	res, err := loadgen.Run(t.Context(), loadgen.Config{
		URL: srv.URL, Protocol: loadgen.ProtocolGRPC, Pipeline: 16, Clients: 3, Batch: 2, Streams: 6,
		DataBytes: 100, ExpectSequence: true, Events: 600, Duration: 30 * time.Second,
		Replay: true, ReplayProtocol: loadgen.ProtocolGRPC,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 600 || res.Requests != 300 || res.Protocol != "grpc" || res.Pipeline != 16 {
		t.Errorf("events %d in %d requests over %s/%d, want 600 in 300 over grpc/16", res.Events, res.Requests, res.Protocol, res.Pipeline)
	}
	if n := res.ErrorCount(); n != 0 {
		t.Errorf("%d errors: %v (first: %s)", n, res.Errors, res.FirstError)
	}
	if res.Replay == nil || res.Replay.Events != 600 || res.Replay.Head != 600 {
		t.Errorf("replay over Subscribe: %+v, want 600 events", res.Replay)
	}
	// A conflict is reported with its HTTP status, as over HTTP. One
	// request in flight per writer: with 256, the first writer could send
	// all 100 events before the others started, and nothing conflicted.
	res, err = loadgen.Run(t.Context(), loadgen.Config{
		URL: srv.URL, Protocol: loadgen.ProtocolGRPC, Pipeline: 1, Clients: 4, Streams: 1, ExpectSequence: true, Events: 100, Duration: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events == 0 || res.Errors["409"] == 0 || res.Events+res.Errors["409"] != 100 {
		t.Errorf("hot stream over gRPC: events %d, errors %v: want successes and 409s adding up to 100", res.Events, res.Errors)
	}
}
