package streamer_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestSSEHistoryThenLive(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for i := 1; i <= 3; i++ {
		srv.MustPost(t, fmt.Sprintf("visits/%d", i), testserver.Event{ID: fmt.Sprintf("h%d", i)})
	}
	srv.MustPost(t, "other/1", testserver.Event{ID: "o1"})

	sse := srv.OpenSSE(t, "/sse?stream=visits/{id}")
	if got := sse.Resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Fatalf("Content-Type = %q", got)
	}
	if got := sse.Resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Fatalf("Cache-Control = %q", got)
	}
	// Not chunked: the body runs until the connection closes, so that each
	// step reaches the socket in one write.
	if te := sse.Resp.TransferEncoding; len(te) != 0 || !sse.Resp.Close || sse.Resp.ContentLength != -1 {
		t.Fatalf("Transfer-Encoding %q, Close %v, Content-Length %d: want an unchunked body delimited by the connection's close",
			te, sse.Resp.Close, sse.Resp.ContentLength)
	}
	frames := sse.Next(t, 3, 5*time.Second)
	for i, f := range frames {
		if f.Number() != int64(i+1) {
			t.Fatalf("frame %d has id %s", i, f.ID)
		}
		if f.Event["id"] != fmt.Sprintf("h%d", i+1) || f.Event["fossilstream"] != fmt.Sprintf("visits/%d", i+1) ||
			f.Event["fossileventnumber"] != float64(i+1) || f.Event["fossilsequenceinstream"] != float64(1) {
			t.Fatalf("frame %d: %s", i, f.Data)
		}
	}
	srv.MustPost(t, "other/2", testserver.Event{ID: "o2"})
	srv.MustPost(t, "visits/9", testserver.Event{ID: "live1"})
	srv.MustPost(t, "visits/9", testserver.Event{ID: "live2"})
	live := sse.Next(t, 2, 5*time.Second)
	if live[0].Event["id"] != "live1" || live[1].Event["id"] != "live2" || live[0].Number() != 6 || live[1].Number() != 7 {
		t.Fatalf("live frames: %+v", live)
	}
	if live[1].Event["fossilsequenceinstream"] != float64(2) {
		t.Fatalf("sequence: %s", live[1].Data)
	}
	sse.Quiet(t, 300*time.Millisecond)
}

func TestSSEResumesAfterLastEventID(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for i := 1; i <= 5; i++ {
		srv.MustPost(t, "s", testserver.Event{ID: fmt.Sprintf("e%d", i)})
	}
	sse := srv.OpenSSE(t, "/sse?stream=s", "Last-Event-Id", "3")
	frames := sse.Next(t, 2, 5*time.Second)
	if frames[0].Number() != 4 || frames[1].Number() != 5 {
		t.Fatalf("got %s, %s", frames[0].ID, frames[1].ID)
	}
	sse.Quiet(t, 200*time.Millisecond)
}

func TestSSERejectsBadInput(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	tests := []struct {
		name, path, lastEventID string
		wantDetail              string
	}{
		{"NoStream", "/sse", "", "stream template is required"},
		{"InvalidTemplate", "/sse?stream=%7Bunclosed", "", "invalid stream template"},
		{"NegativeCursor", "/sse?stream=a", "-1", "non-negative integer"},
		{"TextCursor", "/sse?stream=a", "abc", "non-negative integer"},
		{"EmptyCursor", "/sse?stream=a", "<empty>", "non-negative integer"},
		{"TooManyTemplates", "/sse?" + strings.Repeat("stream=a&", 65), "", "at most 64 stream templates"},
		{"UnknownParameter", "/sse?stream=a&type=x", "", `unknown query parameter \"type\"`},
		{"MisspeltParameter", "/sse?streams=a", "", `unknown query parameter \"streams\"`},
		{"EventsUnknownParameter", "/events?from=1", "", `unknown query parameter \"from\"`},
		{"StreamEventsUnknownParameter", "/streams/a/events?after=1", "", `unknown query parameter \"after\"`},
		{"EventUnknownParameter", "/events/1?pretty=1", "", `unknown query parameter \"pretty\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			switch tt.lastEventID {
			case "":
			case "<empty>":
				req.Header.Set("Last-Event-Id", "")
			default:
				req.Header.Set("Last-Event-Id", tt.lastEventID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if !strings.Contains(string(body), tt.wantDetail) {
				t.Fatalf("body %s lacks %q", body, tt.wantDetail)
			}
		})
	}
}

// TestSSEAcceptsAccessToken: access_token is the one query parameter every
// endpoint takes besides its own (authentication reads it).
func TestSSEAcceptsAccessToken(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for _, path := range []string{"/events?after=0&access_token=x", "/streams/a/events?access_token=x"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
		}
	}
}

func TestSSEKeepalive(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.SSEKeepalive = 50 * time.Millisecond })
	sse := srv.OpenSSE(t, "/sse?stream=idle")
	deadline := time.Now().Add(5 * time.Second)
	for sse.Comments() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no keepalive comments")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSSESelectiveHistory: a catch-up by a template without a literal
// prefix, and by several templates, returns exactly the matching events of
// the history in number order (read from the matching streams, not the
// log), then a live event of a stream created afterwards.
func TestSSESelectiveHistory(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	posts := []string{"a/needle", "other/1", "b/needle", "a/needle", "x/hay", "small/one", "b/needle"}
	for i, s := range posts {
		srv.MustPost(t, s, testserver.Event{ID: fmt.Sprintf("p%d", i+1)})
	}
	sse := srv.OpenSSE(t, "/sse?stream={cat}/needle&stream=small/one")
	want := []int64{1, 3, 4, 6, 7}
	frames := sse.Next(t, len(want), 5*time.Second)
	for i, f := range frames {
		if f.Number() != want[i] {
			t.Fatalf("frame %d is event %d, want %d (%s)", i, f.Number(), want[i], f.Data)
		}
	}
	srv.MustPost(t, "c/needle", testserver.Event{ID: "live"})
	live := sse.Next(t, 1, 5*time.Second)
	if live[0].Number() != 8 || live[0].Event["fossilstream"] != "c/needle" {
		t.Fatalf("live frame: %s", live[0].Data)
	}
	sse.Quiet(t, 300*time.Millisecond)
}

// TestSSECatchUpAcrossPages: a literal stream whose history spans several
// pages, behind events of other streams, is replayed from SQL (the
// server starts after the history exists, so the tail cache is empty)
// with each page read while the previous one is written: every event
// once, in order, then a live event.
func TestSSECatchUpAcrossPages(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	bulkInsert(t, dbURL, "other/1", 0, 500, 100)
	bulkInsert(t, dbURL, "big/1", 500, 4500, 300) // several pages of 1000 events or 256 KiB
	srv := testserver.StartOn(t, dbURL)
	sse := srv.OpenSSE(t, "/sse?stream=big/1")
	frames := sse.Next(t, 4500, 30*time.Second)
	for i, f := range frames {
		if f.Number() != int64(501+i) || f.Event["fossilsequenceinstream"] != float64(i+1) {
			t.Fatalf("frame %d is event %d (%s), want %d", i, f.Number(), f.Data, 501+i)
		}
	}
	srv.MustPost(t, "big/1", testserver.Event{ID: "live"})
	live := sse.Next(t, 1, 5*time.Second)
	if live[0].Number() != 5001 || live[0].Event["id"] != "live" {
		t.Fatalf("live frame: %s", live[0].Data)
	}
	sse.Quiet(t, 300*time.Millisecond)
}
