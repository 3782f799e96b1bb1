package streamer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

// TestShutdownWithOpenStreams closes a server that has 100 open streams —
// idle ones waiting for live events, and three clients that stopped
// reading while the server was writing a large backlog to them, which a
// cancelled context alone does not interrupt. Close must finish well within
// the shutdown timeout (http.Server.Shutdown does not time out, so every
// stream ended by itself) and every client must see its stream end; the
// idle ones cleanly.
func TestShutdownWithOpenStreams(t *testing.T) {
	t.Parallel()
	labelled(t.Name(), func() { testShutdownWithOpenStreams(t) })
}

func testShutdownWithOpenStreams(t *testing.T) {
	const (
		readers = 97
		stuck   = 3
	)
	dbURL := dbtest.NewDB(t)
	bulkInsert(t, dbURL, "bulk/1", 0, 1500, 8<<10) // 12 MB of frames for the stuck clients
	srv := testserver.StartOn(t, dbURL)
	hub := srv.Hub()

	for range stuck {
		dialStuck(t, srv.URL, ssePath("{+all}"))
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var ended sync.WaitGroup
	endErrs := make(chan error, readers)
	for i := range readers {
		req, err := http.NewRequest(http.MethodGet, srv.URL+ssePath(fmt.Sprintf("idle/%d", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: status %d", i, resp.StatusCode)
		}
		ended.Go(func() {
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				endErrs <- err
			}
		})
	}
	testserver.Eventually(t, 30*time.Second, "100 open streams", func() bool { return hub.Clients() == readers+stuck })
	testserver.Eventually(t, 90*time.Second, "the stuck clients' writes to block", func() bool {
		_, blocked := goroutineStats(t.Name(), "feed.(*subscriber).write")
		return blocked >= stuck
	})

	begin := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		took := time.Since(begin)
		t.Logf("Close with %d open streams (%d of them not reading) took %s", readers+stuck, stuck, took.Round(time.Millisecond))
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
		if limit := srv.Config.ShutdownTimeout; took >= limit {
			t.Fatalf("Close took %s, the whole shutdown timeout of %s", took, limit)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30s")
	}
	allEnded := make(chan struct{})
	go func() { ended.Wait(); close(allEnded) }()
	select {
	case <-allEnded:
	case <-time.After(10 * time.Second):
		t.Fatal("streams still open 10s after Close returned")
	}
	if n := hub.Clients(); n != 0 {
		t.Fatalf("%d streams still counted after Close", n)
	}
	// Idle streams end with a proper end of the response (the final
	// chunk), not a cut connection.
	close(endErrs)
	for err := range endErrs {
		t.Errorf("an idle stream did not end cleanly: %v", err)
	}
}

// TestConnectDisconnectCycles connects and disconnects 100 subscribers —
// some hang up right after the headers, some in the middle of a catch-up
// read from SQL, some after catching up — and checks that the goroutines
// (of this test and the server it started; see labelled) and the pool's
// acquired connections come back to where they were.
func TestConnectDisconnectCycles(t *testing.T) {
	t.Parallel()
	labelled(t.Name(), func() { testConnectDisconnectCycles(t) })
}

func testConnectDisconnectCycles(t *testing.T) {
	const (
		history = 300
		cycles  = 100
	)
	dbURL := dbtest.NewDB(t)
	bulkInsert(t, dbURL, "cyc/1", 0, history, 200)
	// Started after the history exists, so its tail cache is empty and
	// every catch-up reads SQL.
	srv := testserver.StartOn(t, dbURL)
	hub, pool := srv.Hub(), srv.Store().Pool()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	cycle := func(i int) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+ssePath("cyc/{id}"), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Last-Event-Id", strconv.Itoa(i%history))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("cycle %d: status %d", i, resp.StatusCode)
		}
		want := 0 // hang up right after the headers
		switch i % 3 {
		case 1:
			want = 1 // in the middle of the catch-up
		case 2:
			want = history - i%history // after catching up
		}
		got := 0
		if want > 0 {
			err = readFrames(resp.Body, func(testserver.Frame) bool { got++; return got < want })
		}
		if got < want {
			return fmt.Errorf("cycle %d: %d of %d frames (%w)", i, got, want, err)
		}
		return nil
	}
	if err := cycle(2); err != nil { // warm up the pool and the client
		t.Fatal(err)
	}
	settle := func(what string, base int, baseAcquired int32) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			g, _ := goroutineStats(t.Name(), "")
			acquired := pool.Stat().AcquiredConns()
			clients := hub.Clients()
			if clients == 0 && g <= base && acquired <= baseAcquired {
				t.Logf("%s: %d goroutines (baseline %d), %d acquired connections (baseline %d), %d streams",
					what, g, base, acquired, baseAcquired, clients)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d goroutines (baseline %d), %d acquired connections (baseline %d), %d streams after 15s",
					what, g, base, acquired, baseAcquired, clients)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	testserver.Eventually(t, 10*time.Second, "the warm-up stream to end", func() bool { return hub.Clients() == 0 })
	time.Sleep(100 * time.Millisecond) // let the warm-up's connection goroutines exit before the baseline
	base, _ := goroutineStats(t.Name(), "")
	baseAcquired := pool.Stat().AcquiredConns()

	errs := make(chan error, cycles)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range cycles {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := cycle(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	settle(fmt.Sprintf("after %d cycles", cycles), base, baseAcquired)
}
