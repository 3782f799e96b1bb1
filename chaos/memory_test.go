//go:build chaos

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowBody opens a connection that sends a /collect request's headers and
// then one byte of body every 3 s; it reports when the server cut it.
func slowBody(addr, head string, cut chan<- time.Duration, start time.Time) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		cut <- -1
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(head)); err != nil {
		cut <- time.Since(start)
		return
	}
	closed := make(chan struct{})
	go func() {
		// The server's answer (413/408) or its close ends the trickle.
		_, _ = io.Copy(io.Discard, conn)
		close(closed)
	}()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-closed:
			cut <- time.Since(start)
			return
		case <-t.C:
			if _, err := conn.Write([]byte("x")); err != nil {
				cut <- time.Since(start)
				return
			}
		}
		if time.Since(start) > 120*time.Second {
			cut <- -1
			return
		}
	}
}

// TestSlowBodies: 200 connections claiming a 16 MB body and sending a byte
// every 3 s, then 200 chunked ones that claim nothing: the server's RSS
// stays under 300 MB and every connection is cut within 60 s.
func TestSlowBodies(t *testing.T) {
	srv := startServer(t, pg.createDB(t), "")
	for _, tt := range []struct{ name, head string }{
		{"ContentLength16MB", "POST /collect HTTP/1.1\r\nHost: x\r\nFossil-Stream: s\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 16777216\r\n\r\n{"},
		{"Chunked", "POST /collect HTTP/1.1\r\nHost: x\r\nFossil-Stream: s\r\nContent-Type: application/cloudevents+json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const conns = 200
			stop := peakRSS(srv.pid())
			start := time.Now()
			cut := make(chan time.Duration, conns)
			for range conns {
				go slowBody(srv.addr, tt.head, cut, start)
			}
			var worst time.Duration
			uncut := 0
			for range conns {
				d := <-cut
				if d < 0 {
					uncut++
					continue
				}
				worst = max(worst, d)
			}
			peak := stop()
			figure(t, "200 slow bodies: peak RSS %.0f MB, %d cut, the last after %.1f s, %d not cut after 120 s", peak, conns-uncut, worst.Seconds(), uncut)
			if uncut > 0 {
				t.Errorf("%d connections were never cut", uncut)
			}
			if peak >= 300 {
				t.Errorf("peak RSS %.0f MB, want < 300", peak)
			}
			if worst > 60*time.Second {
				t.Errorf("the last connection was cut after %v, want within 60s", worst)
			}
		})
	}
}

// fillLarge stores n events of size bytes of data each.
func fillLarge(t *testing.T, base string, n, size int) {
	t.Helper()
	data := []byte(`{"pad":"` + strings.Repeat("y", size) + `"}`)
	for i := range n {
		resp, err := post(context.Background(), base, fmt.Sprintf("big/%d", i%4), fmt.Sprintf("big%d", i), data)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("store large event %d: %v %v", i, resp, err)
		}
	}
}

// readAllEvents pages through /events?limit=1000 and returns how many
// events it read.
func readAllEvents(base string) (int, error) {
	n := 0
	next := "/events?limit=1000"
	for next != "" {
		resp, err := client.Get(base + next)
		if err != nil {
			return n, err
		}
		var page []json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return n, err
		}
		n += len(page)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = l[strings.Index(l, "<")+1 : strings.Index(l, ">")]
		}
	}
	return n, nil
}

// readSSE reads /sse from the start until it has n events.
func readSSE(ctx context.Context, base string, n int) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?stream=%7B%2Ball%7D", nil)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	got := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "id: ") {
			if got++; got == n {
				return got, nil
			}
		}
	}
	return got, sc.Err()
}

// TestLargeEvents: 100 events of 900 KB read at once by 4 readers of
// /events?limit=1000 and 4 SSE clients: every read completes and the
// server's RSS stays under 600 MB.
func TestLargeEvents(t *testing.T) {
	srv := startServer(t, pg.createDB(t), "")
	fillLarge(t, srv.url, 100, 900_000)
	stop := peakRSS(srv.pid())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			n, err := readAllEvents(srv.url)
			if err == nil && n != 100 {
				err = fmt.Errorf("/events read %d events, want 100", n)
			}
			errs <- err
		})
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			n, err := readSSE(ctx, srv.url, 100)
			if err == nil && n != 100 {
				err = fmt.Errorf("SSE read %d events, want 100", n)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	peak := stop()
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	figure(t, "100 events of 900 KB read by 4 /events?limit=1000 readers and 4 SSE clients at once: all complete, peak RSS %.0f MB", peak)
	if peak >= 600 {
		t.Errorf("peak RSS %.0f MB, want < 600", peak)
	}
}

// TestUnreadSSE: 2,000 SSE clients that never read, on a log of 20,000
// small events and 20 events of 900 KB: the server's RSS stays under 600 MB,
// they are disconnected after the write timeout, and memory comes back
// after they are gone.
func TestUnreadSSE(t *testing.T) {
	srv := startServer(t, pg.createDB(t), "", "FOSSIL_SSE_WRITE_TIMEOUT=10s", "FOSSIL_MEMORY_LIMIT=536870912")
	batch := make([]string, 0, 100)
	for i := range 20_000 {
		batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"s%d","source":"/chaos","type":"t","data":{"i":%d,"pad":"%s"}}`, i, i, strings.Repeat("z", 200)))
		if len(batch) == 100 {
			req, _ := http.NewRequest(http.MethodPost, srv.url+"/collect", strings.NewReader("["+strings.Join(batch, ",")+"]"))
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
			req.Header.Set("Fossil-Stream", "small/"+strconv.Itoa(i%7))
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("fill: %v %v", resp, err)
			}
			resp.Body.Close()
			batch = batch[:0]
		}
	}
	fillLarge(t, srv.url, 20, 900_000)
	const clients = 2000
	stop := peakRSS(srv.pid())
	var conns []net.Conn
	for range clients {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		_, _ = c.Write([]byte("GET /sse?stream=%7B%2Ball%7D HTTP/1.1\r\nHost: x\r\n\r\n"))
		conns = append(conns, c)
	}
	var cut atomic.Int64
	time.Sleep(20 * time.Second) // past the 10 s write timeout
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now())
		c.Close()
		cut.Add(1)
	}
	peak := stop()
	time.Sleep(10 * time.Second)
	after := rssMB(srv.pid())
	figure(t, "2,000 SSE clients that never read (log of 20,000 small and 20 900 KB events, --memory-limit 512 MiB, write timeout 10 s): peak RSS %.0f MB, %.0f MB 10 s after they closed", peak, after)
	if !srv.alive() {
		t.Fatal("the server died")
	}
	// Each subscriber behind the ring holds two pages: their share of the
	// catch-up budget keeps them near the soft limit (with 1 MiB pages
	// each, the peak was 3.2 GB).
	if peak >= 600 {
		t.Errorf("peak RSS %.0f MB, want < 600 (--memory-limit 512 MiB)", peak)
	}
}

// TestSustainedBatches: `fossil bench` with 16 clients posting batches of
// 100 events for 20 s without a pause, so that the appender pipelines
// group after group: the server's RSS stays under 300 MB (a group in
// flight once kept every group before it alive, and this load took the
// RSS past 1 GB in 10 s).
func TestSustainedBatches(t *testing.T) {
	srv := startServer(t, pg.createDB(t), "")
	stop := peakRSS(srv.pid())
	out, err := exec.Command(fossilBin, "bench", "--url", srv.url, "--clients", "16", "--batch", "100",
		"--streams", "1000", "--duration", "20s", "--json").Output()
	peak := stop()
	if err != nil {
		t.Fatalf("fossil bench: %v\n%s", err, out)
	}
	var res struct {
		Events int64          `json:"events"`
		Errors map[string]int `json:"errors"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("fossil bench --json: %v\n%s", err, out)
	}
	figure(t, "16 clients of 100-event batches for 20 s: %d events, peak RSS %.0f MB", res.Events, peak)
	if len(res.Errors) > 0 {
		t.Errorf("errors: %v", res.Errors)
	}
	if res.Events < 10000 {
		t.Errorf("only %d events appended: the load did not run", res.Events)
	}
	if peak >= 300 {
		t.Errorf("peak RSS %.0f MB, want < 300", peak)
	}
}
