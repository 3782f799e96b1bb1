package streamer_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// readEvent is the part of a served event the read tests look at.
type readEvent struct {
	ID       string `json:"id"`
	Number   int64  `json:"fossileventnumber"`
	Sequence int64  `json:"fossilsequenceinstream"`
	Stream   string `json:"fossilstream"`
	Data     any    `json:"data"`
}

// get fetches url and returns the response with its body read.
func get(t testing.TB, rawURL string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

var linkNext = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// readPages follows rel="next" links from path and returns every event and
// the number of pages read.
func readPages(t testing.TB, base, path string) ([]readEvent, int) {
	t.Helper()
	var all []readEvent
	pages := 0
	for path != "" {
		pages++
		if pages > 100 {
			t.Fatalf("more than 100 pages from %s", path)
		}
		resp, body := get(t, base+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/cloudevents-batch+json" {
			t.Fatalf("GET %s: Content-Type %q", path, ct)
		}
		var page []readEvent
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		all = append(all, page...)
		path = ""
		if link := resp.Header.Get("Link"); link != "" {
			m := linkNext.FindStringSubmatch(link)
			if m == nil {
				t.Fatalf("GET %s: malformed Link %q", path, link)
			}
			next, err := url.Parse(m[1])
			if err != nil || next.IsAbs() || !strings.HasPrefix(m[1], "/") {
				t.Fatalf("Link %q is not a relative URL", link)
			}
			path = m[1]
		}
	}
	return all, pages
}

// TestReadAPI covers the query endpoints of api.md "Reading by query".
func TestReadAPI(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	// Streams with '/' and characters that need escaping, interleaved so
	// that event numbers and sequences differ.
	streams := []string{"orders/1", "a b/ü?#%", "orders/2"}
	for i := 1; i <= 7; i++ {
		for si, s := range streams {
			srv.MustPost(t, s, testserver.Event{ID: fmt.Sprintf("s%d-%d", si, i), Data: fmt.Sprintf(`{"i":%d}`, i)})
		}
	}
	total := int64(7 * len(streams))

	t.Run("StreamEventsPaged", func(t *testing.T) {
		t.Parallel()
		for si, s := range streams {
			path := "/streams/" + url.PathEscape(s) + "/events?limit=3"
			events, pages := readPages(t, srv.URL, path)
			if pages != 3 {
				t.Errorf("%s: %d pages, want 3", s, pages)
			}
			if len(events) != 7 {
				t.Fatalf("%s: %d events", s, len(events))
			}
			for i, e := range events {
				if e.Stream != s || e.Sequence != int64(i+1) || e.Number != int64(i*len(streams)+si+1) ||
					e.ID != fmt.Sprintf("s%d-%d", si, i+1) || fmt.Sprint(e.Data) != fmt.Sprintf("map[i:%d]", i+1) {
					t.Fatalf("%s event %d: %+v", s, i, e)
				}
			}
		}
	})
	t.Run("StreamEventsFrom", func(t *testing.T) {
		t.Parallel()
		events, _ := readPages(t, srv.URL, "/streams/orders%2F1/events?from=6")
		if len(events) != 2 || events[0].Sequence != 6 || events[1].Sequence != 7 {
			t.Fatalf("from=6: %+v", events)
		}
		resp, _ := get(t, srv.URL+"/streams/orders%2F1/events?from=6&limit=2")
		if link := resp.Header.Get("Link"); link != `</streams/orders%2F1/events?from=8&limit=2>; rel="next"` {
			t.Errorf("Link = %q", link)
		}
		events, _ = readPages(t, srv.URL, "/streams/orders%2F1/events?from=8")
		if len(events) != 0 {
			t.Fatalf("past the end: %+v", events)
		}
	})
	t.Run("UnknownStreamIsEmpty", func(t *testing.T) {
		t.Parallel()
		resp, body := get(t, srv.URL+"/streams/"+url.PathEscape("no/such/stream")+"/events")
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" ||
			resp.Header.Get("Content-Type") != "application/cloudevents-batch+json" || resp.Header.Get("Link") != "" {
			t.Fatalf("%d %q %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Link"), body)
		}
	})
	t.Run("GlobalLogPaged", func(t *testing.T) {
		t.Parallel()
		events, pages := readPages(t, srv.URL, "/events?limit=4")
		if pages != 6 {
			t.Errorf("%d pages, want 6", pages)
		}
		var numbers []int64
		for _, e := range events {
			numbers = append(numbers, e.Number)
		}
		wantRange(t, "global log", numbers, 1, total)
		events, _ = readPages(t, srv.URL, "/events?after=19")
		if len(events) != 2 || events[0].Number != 20 || events[1].Number != 21 {
			t.Fatalf("after=19: %+v", events)
		}
		resp, _ := get(t, srv.URL+"/events?after=2&limit=2")
		if link := resp.Header.Get("Link"); link != `</events?after=4&limit=2>; rel="next"` {
			t.Errorf("Link = %q", link)
		}
		events, _ = readPages(t, srv.URL, "/events?after=1000")
		if len(events) != 0 {
			t.Fatalf("after the head: %+v", events)
		}
	})
	t.Run("DefaultAndMaxLimit", func(t *testing.T) {
		t.Parallel()
		for _, q := range []string{"", "?limit=1000"} {
			resp, body := get(t, srv.URL+"/events"+q)
			var page []readEvent
			if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != http.StatusOK || int64(len(page)) != total || resp.Header.Get("Link") != "" {
				t.Fatalf("/events%s: %d, %d events, Link %q, %v", q, resp.StatusCode, len(page), resp.Header.Get("Link"), err)
			}
		}
	})
	t.Run("OneEvent", func(t *testing.T) {
		t.Parallel()
		resp, body := get(t, srv.URL+"/events/5")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/cloudevents+json" {
			t.Fatalf("%d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var e readEvent
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Number != 5 || e.Stream != "a b/ü?#%" || e.Sequence != 2 || e.ID != "s1-2" {
			t.Fatalf("event 5: %+v", e)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name, path string
			status     int
			detail     string
		}{
			{"UnknownNumber", "/events/999", http.StatusNotFound, ""},
			{"NonNumericNumber", "/events/abc", http.StatusBadRequest, "path.number"},
			{"NegativeNumber", "/events/-1", http.StatusBadRequest, "path.number"},
			{"LimitAboveMax", "/events?limit=1001", http.StatusBadRequest, "limit"},
			{"LimitZero", "/events?limit=0", http.StatusBadRequest, "limit"},
			{"LimitText", "/events?limit=ten", http.StatusBadRequest, "limit"},
			{"AfterNegative", "/events?after=-1", http.StatusBadRequest, "after"},
			{"StreamLimitAboveMax", "/streams/orders%2F1/events?limit=1001", http.StatusBadRequest, "limit"},
			{"StreamLimitZero", "/streams/orders%2F1/events?limit=0", http.StatusBadRequest, "limit"},
			{"StreamFromZero", "/streams/orders%2F1/events?from=0", http.StatusBadRequest, "from"},
			{"StreamLeadingSlash", "/streams/%2Forders/events", http.StatusBadRequest, "stream"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				resp, body := get(t, srv.URL+tt.path)
				if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("%d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				var p map[string]any
				if err := json.Unmarshal(body, &p); err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"type", "title", "status", "detail"} {
					if _, ok := p[k]; !ok {
						t.Errorf("problem lacks %q: %s", k, body)
					}
				}
				if p["status"] != float64(tt.status) {
					t.Errorf("problem status %v", p["status"])
				}
				if !strings.Contains(string(body), tt.detail) {
					t.Errorf("problem does not mention %q: %s", tt.detail, body)
				}
			})
		}
	})
	t.Run("MatchesSSE", func(t *testing.T) {
		t.Parallel()
		// The read API and SSE serve the same bytes for an event.
		sse := srv.OpenSSE(t, ssePath("orders/{id}"))
		frames := sse.Next(t, 14, 10*time.Second)
		for _, f := range frames {
			_, body := get(t, srv.URL+"/events/"+f.ID)
			if got := strings.TrimSpace(string(body)); got != f.Data {
				t.Errorf("/events/%s serves\n%s\nSSE sent\n%s", f.ID, got, f.Data)
			}
		}
		var want []int64
		for n := int64(1); n <= total; n++ {
			if n%3 != 2 { // every third event is in "a b/ü?#%"
				want = append(want, n)
			}
		}
		if !slices.Equal(frameNumbers(frames), want) {
			t.Fatalf("SSE numbers %v, want %v", frameNumbers(frames), want)
		}
	})
}
