package streamer_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// TestSlowSubscriber connects a client that sends its request and never
// reads a byte, then writes 10,000 events (about 8.5 MB of frames, twice
// what the socket buffers hold) from 8 concurrent writers. Another
// subscriber receives all of them in order, every POST succeeds (writers
// never wait for subscribers), the stuck client is disconnected after the
// write timeout instead of being buffered for, and the goroutines of the
// server and the tail cache stay bounded throughout.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	labelled(t.Name(), func() { testSlowSubscriber(t) })
}

func testSlowSubscriber(t *testing.T) {
	const (
		writers = 8
		batches = 25 // per writer
		batch   = 50 // events per POST
		total   = writers * batches * batch
	)
	srv := testserver.Start(t, func(c *cmd.Config) { c.SSEWriteTimeout = time.Second })
	hub := srv.Hub()

	stuck := dialStuck(t, srv.URL, ssePath("slow/{id}"))
	testserver.Eventually(t, 5*time.Second, "the stuck client's stream to open", func() bool { return hub.Clients() == 1 })
	reader := srv.OpenSSE(t, ssePath("slow/{id}"))
	testserver.Eventually(t, 5*time.Second, "the reader's stream to open", func() bool { return hub.Clients() == 2 })
	base, _ := goroutineStats(t.Name(), "")

	var memBefore runtime.MemStats
	runtime.ReadMemStats(&memBefore)
	var (
		maxGoroutines atomic.Int64
		maxCached     atomic.Int64
		maxCachedB    atomic.Int64
		sampling      = make(chan struct{})
		sampled       = make(chan struct{})
	)
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			n, _ := goroutineStats(t.Name(), "")
			maxGoroutines.Store(max(maxGoroutines.Load(), int64(n)))
			events, bytes := hub.Cached()
			maxCached.Store(max(maxCached.Load(), int64(events)))
			maxCachedB.Store(max(maxCachedB.Load(), bytes))
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
		}
	}()

	pad := strings.Repeat("x", 600) // 10,000 frames of ~850 bytes: twice what the socket buffers hold
	client := newClient(t)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	begin := time.Now()
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				events := make([]map[string]any, batch)
				for i := range events {
					events[i] = map[string]any{
						"specversion": "1.0", "id": fmt.Sprintf("w%d-b%d-%d", w, b, i), "source": "/slow", "type": "slow.event",
						"data": map[string]any{"w": w, "b": b, "i": i, "pad": pad},
					}
				}
				if r := postBatch(client, srv.URL, fmt.Sprintf("slow/%d", w), events); r.err != nil || r.status != http.StatusOK {
					errs <- fmt.Errorf("writer %d batch %d: status %d, err %w: %s", w, b, r.status, r.err, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d writers stored %d events in %s with a stuck subscriber connected", writers, total, time.Since(begin).Round(time.Millisecond))
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	wantRange(t, "reading subscriber", frameNumbers(reader.Next(t, total, 60*time.Second)), 1, total)
	testserver.Eventually(t, 30*time.Second, "the stuck client to be disconnected by the write timeout", func() bool { return hub.Clients() == 1 })
	if !stuck.closedByServer(5 * time.Second) {
		t.Error("the server did not close the stuck client's connection")
	}
	close(sampling)
	<-sampled

	var memAfter runtime.MemStats
	runtime.ReadMemStats(&memAfter)
	t.Logf("goroutines of this test: %d at start, at most %d while writing; tail cache at most %d events / %d bytes; heap in use %d → %d MiB (process-wide, all parallel tests)",
		base, maxGoroutines.Load(), maxCached.Load(), maxCachedB.Load(), memBefore.HeapInuse>>20, memAfter.HeapInuse>>20)
	// Writers, their connections and the server's handlers for them: a
	// handful per writer, never one per event or per buffered frame.
	if limit := int64(base + 10*writers); maxGoroutines.Load() > limit {
		t.Errorf("goroutines peaked at %d, more than %d", maxGoroutines.Load(), limit)
	}
	if maxCached.Load() > 16384 || maxCachedB.Load() > 64<<20 {
		t.Errorf("tail cache grew to %d events / %d bytes, beyond its bounds", maxCached.Load(), maxCachedB.Load())
	}
}

// stuckClient is a raw HTTP client that sends one request and never reads
// the response.
type stuckClient struct{ conn net.Conn }

// dialStuck opens baseURL+path and never reads. The connection is closed
// when the test ends.
func dialStuck(t testing.TB, baseURL, path string) *stuckClient {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, u.Host); err != nil {
		t.Fatal(err)
	}
	return &stuckClient{conn: conn}
}

// closedByServer drains what the server had buffered and reports whether
// the server closed the connection within d.
func (c *stuckClient) closedByServer(d time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.conn.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false
			}
			return true // EOF or reset: closed
		}
	}
}
