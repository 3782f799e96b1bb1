package cmd_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// hostileRoutes are the routes of the server with {var} where hostile
// values go. make chaos fuzzes the same routes with random input for a
// minute (chaos/).
var hostileRoutes = []string{
	"/collect", "/consumers", "/consumer/{v}", "/consumer/{v}/commit", "/consumer/{v}/sse?stream={v}",
	"/events", "/events?after={v}&limit={v}", "/events/{v}", "/events/{v}/ack", "/events/{v}/proof",
	"/healthz", "/readyz", "/metrics", "/schemas", "/schemas/{v}", "/sse?stream={v}",
	"/streams/{v}/events", "/streams/{v}/events?from={v}&limit={v}",
	"/subscriptions", "/subscriptions/{v}", "/subscriptions/{v}/ack", "/subscriptions/{v}/nack",
	"/subscriptions/{v}/parked", "/subscriptions/{v}/parked/replay", "/subscriptions/{v}/parked/{v}",
	"/subscriptions/{v}/sse", "/checkpoint", "/tile/{v}/{v}", "/proofs/consistency?from={v}&to={v}",
}

// hostileValues are path and query values that once reached PostgreSQL
// as invalid text, or that parsers tend to get wrong.
var hostileValues = []string{
	"%ff", "a%00b", "%c0%80", "%", "%2F..%2F", "-1", "0", "99999999999999999999", "1e3",
	"%7B%2Ball%7D", strings.Repeat("x", 300), "%E2%80%AE", "a%0Ab",
}

var hostileBodies = []string{
	"", "{", "null", `{"consumer_name":"a\u0000b"}`, "{\"consumer_name\":\"\xff\",\"source\":\"\xfe\"}",
	`{"numbers":[1e400]}`, `[` + strings.Repeat(`[`, 200), `{"specversion":"1.0","id":"a\u0000","source":"\u0000","type":"t"}`,
}

// TestHostileRequestsNeverFail5xx sends every route hostile path values,
// methods and bodies: every answer is below 500 and an error is a
// problem document. A deterministic sample; make chaos runs the random
// fuzz for a minute.
func TestHostileRequestsNeverFail5xx(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.BodyTimeout = 2 * time.Second })
	client := &http.Client{}
	type job struct {
		method, path, body string
		headers            map[string]string
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				// A stream that opens is cut short; anything else must answer.
				timeout := 20 * time.Second
				if strings.Contains(j.path, "sse") {
					timeout = 500 * time.Millisecond
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				req, err := http.NewRequestWithContext(ctx, j.method, srv.URL+j.path, strings.NewReader(j.body))
				if err != nil {
					cancel()
					continue // not a request a client can send
				}
				for k, v := range j.headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil && strings.Contains(j.path, "sse") && errors.Is(err, context.DeadlineExceeded) {
					cancel() // a stream that was slow to start on a loaded machine
					continue
				}
				if err != nil {
					cancel()
					mu.Lock()
					failures = append(failures, j.method+" "+j.path+": "+err.Error())
					mu.Unlock()
					continue
				}
				// Streams that opened are cut by the context; only the status matters.
				_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
				resp.Body.Close()
				cancel()
				bad := resp.StatusCode >= 500 ||
					(resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json")
				if bad {
					mu.Lock()
					failures = append(failures, j.method+" "+j.path+" "+strings.ToValidUTF8(j.body, "?")+": "+resp.Status+" "+resp.Header.Get("Content-Type"))
					mu.Unlock()
				}
			}
		}()
	}
	headerSets := []map[string]string{
		nil,
		{"Content-Type": "application/cloudevents+json", "Fossil-Stream": "s", "Last-Event-Id": "%ff"},
		{"Fossil-Stream": "a\xffb", "ce-specversion": "1.0", "ce-id": "%00", "ce-source": "%ff", "ce-type": "t",
			"Last-Event-Id": "\xff", "Fossil-Wait-Consumer": "\xff; timeout=1", "Fossil-Expected-Sequence-Number": "\xff"},
	}
	n := 0
	for _, route := range hostileRoutes {
		for _, v := range hostileValues {
			path := strings.ReplaceAll(route, "{v}", v)
			for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
				jobs <- job{method: m, path: path, body: hostileBodies[n%len(hostileBodies)], headers: headerSets[n%len(headerSets)]}
				n++
			}
		}
	}
	close(jobs)
	wg.Wait()
	// Connections the transport dialled but never sent a request on are
	// "new" to the server, and Shutdown counts a new connection as idle
	// only after 5 s: close them, or closing the server waits that long.
	client.CloseIdleConnections()
	if len(failures) > 0 {
		if len(failures) > 20 {
			failures = append(failures[:20], "…")
		}
		t.Fatalf("%d of %d hostile requests failed:\n%s", len(failures), n, strings.Join(failures, "\n"))
	}
}
