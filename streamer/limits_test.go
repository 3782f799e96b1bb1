package streamer_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// TestSSEConnectionCap: beyond --max-sse-clients a stream is refused with a
// 503 problem and Retry-After before any stream bytes, and a slot freed by
// a closed stream is available again.
func TestSSEConnectionCap(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.MaxSSEClients = 2 })
	first := srv.OpenSSE(t, "/sse?stream=a")
	second := srv.OpenSSE(t, "/sse?stream=b")
	if first.Err() != nil || second.Err() != nil {
		t.Fatalf("first streams: %v, %v", first.Err(), second.Err())
	}
	resp, err := http.Get(srv.URL + "/sse?stream=c")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), "too many open event streams") {
		t.Fatalf("third stream: %d %q %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
	}
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/sse?stream=d")
		if err != nil {
			t.Fatal(err)
		}
		status := resp.StatusCode
		resp.Body.Close()
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the freed slot was not reused: status %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
