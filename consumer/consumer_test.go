package consumer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

func TestCommit(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for i := 1; i <= 5; i++ {
		srv.MustPost(t, "orders/1", testserver.Event{ID: fmt.Sprintf("e%d", i)})
	}
	before := time.Now().Add(-time.Minute)

	// Steps run in order against consumer "c"; want is the status and
	// offset the stored offset afterwards.
	steps := []struct {
		name       string
		headers    []string
		wantStatus int
		wantOffset int64
		wantDetail string // in the problem detail
	}{
		{"NoHeaderFirst", nil, http.StatusBadRequest, -1, "Last-Fossil-Event-Number"},
		{"LastEventID", []string{"Last-Event-Id", "3"}, http.StatusNoContent, 3, ""},
		{"LastFossilEventNumber", []string{"Last-Fossil-Event-Number", "4"}, http.StatusNoContent, 4, ""},
		{"Same", []string{"Last-Event-Id", "4"}, http.StatusNoContent, 4, ""},
		{"NoHeader", nil, http.StatusBadRequest, 4, ""},
		{"EmptyValue", []string{"Last-Event-Id", ""}, http.StatusBadRequest, 4, ""},
		{"NotInteger", []string{"Last-Event-Id", "abc"}, http.StatusBadRequest, 4, "non-negative integer"},
		{"Negative", []string{"Last-Event-Id", "-1"}, http.StatusBadRequest, 4, ""},
		{"Fraction", []string{"Last-Fossil-Event-Number", "4.5"}, http.StatusBadRequest, 4, ""},
		{"Overflow", []string{"Last-Event-Id", "99999999999999999999999"}, http.StatusBadRequest, 4, ""},
		{"BeyondNewest", []string{"Last-Event-Id", "6"}, http.StatusBadRequest, 4, "header.Last-Event-Id: offset 6 is beyond the newest event (5)"},
		{"BeyondNewestNumberHeader", []string{"Last-Fossil-Event-Number", "7"}, http.StatusBadRequest, 4, "header.Last-Fossil-Event-Number: offset 7 is beyond"},
		{"BeyondNewestWithRewind", []string{"Last-Event-Id", "6", "Fossil-Rewind", "true"}, http.StatusBadRequest, 4, ""},
		{"Backwards", []string{"Last-Event-Id", "2"}, http.StatusConflict, 4, "below the committed offset 4"},
		{"BackwardsRewindFalse", []string{"Last-Event-Id", "2", "Fossil-Rewind", "false"}, http.StatusConflict, 4, ""},
		{"RewindJunk", []string{"Last-Event-Id", "2", "Fossil-Rewind", "yes"}, http.StatusBadRequest, 4, `header.Fossil-Rewind: must be true or false, got "yes"`},
		{"RewindEmpty", []string{"Last-Event-Id", "2", "Fossil-Rewind", ""}, http.StatusBadRequest, 4, "must be true or false"},
		{"BackwardsRewind", []string{"Last-Event-Id", "2", "Fossil-Rewind", "true"}, http.StatusNoContent, 2, ""},
		{"ToNewest", []string{"Last-Fossil-Event-Number", "5"}, http.StatusNoContent, 5, ""},
	}
	for _, s := range steps {
		res := commit(t, srv.URL, "c", s.headers...)
		if s.wantStatus == http.StatusNoContent {
			if res.status != http.StatusNoContent || len(res.body) != 0 {
				t.Fatalf("%s: status %d, body %q; want an empty 204", s.name, res.status, res.body)
			}
		} else {
			p := requireProblem(t, res, s.wantStatus)
			if !strings.Contains(p.Detail, s.wantDetail) {
				t.Errorf("%s: detail %q does not contain %q", s.name, p.Detail, s.wantDetail)
			}
		}
		if s.wantOffset < 0 {
			requireProblem(t, do(t, http.MethodGet, consumerURL(srv.URL, "c", ""), ""), http.StatusNotFound)
			continue
		}
		if got := getStatus(t, srv.URL, "c"); got.Offset != s.wantOffset {
			t.Fatalf("%s: offset %d, want %d", s.name, got.Offset, s.wantOffset)
		}
	}

	mustCommit(t, srv.URL, "d", 1)
	srv.MustPost(t, "orders/2", testserver.Event{ID: "e6"})

	c := getStatus(t, srv.URL, "c")
	if c.Name != "c" || c.Offset != 5 || c.Lag != 1 || c.Connected || c.CommittedAt == nil {
		t.Fatalf("GET /consumer/c = %+v, want offset 5, lag 1, not connected, committed", c)
	}
	if c.CommittedAt.Before(before) || c.CommittedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("committed_at = %v", c.CommittedAt)
	}
	d := getStatus(t, srv.URL, "d")
	if d.Offset != 1 || d.Lag != 5 || d.Connected {
		t.Fatalf("GET /consumer/d = %+v", d)
	}

	p := requireProblem(t, do(t, http.MethodGet, consumerURL(srv.URL, "unknown", ""), ""), http.StatusNotFound)
	if !strings.Contains(p.Detail, "unknown") {
		t.Errorf("404 detail %q does not name the consumer", p.Detail)
	}

	all := listStatus(t, srv.URL)
	if len(all) != 2 || all[0].Name != "c" || all[1].Name != "d" || all[0].Offset != 5 || all[1].Lag != 5 {
		t.Fatalf("GET /consumers = %+v", all)
	}
}

// TestUnknownQueryParameters: the consumer endpoints reject parameters
// they do not take, naming them.
func TestUnknownQueryParameters(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	srv.MustPost(t, "s", testserver.Event{ID: "e1"})
	for _, tt := range []struct{ method, url, param string }{
		{http.MethodPut, consumerURL(srv.URL, "c", "/commit") + "?force=1", "force"},
		{http.MethodGet, consumerURL(srv.URL, "c", "") + "?verbose=1", "verbose"},
		{http.MethodGet, srv.URL + "/consumers?limit=1", "limit"},
		{http.MethodPost, srv.URL + "/events/e1/ack?consumer=c", "consumer"},
	} {
		p := requireProblem(t, do(t, tt.method, tt.url, `{"consumer_name":"c"}`, "Last-Event-Id", "1"), http.StatusBadRequest)
		if !strings.Contains(p.Detail, `unknown query parameter "`+tt.param+`"`) {
			t.Errorf("%s %s: detail %q", tt.method, tt.url, p.Detail)
		}
	}
}

// TestConnectedBeforeFirstCommit: a consumer that is streaming but has not
// committed yet is known, connected, at offset 0.
func TestConnectedBeforeFirstCommit(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	srv.MustPost(t, "s", testserver.Event{ID: "e1"})
	s := mustOpenStream(t, srv.URL, "/consumer/fresh/sse?stream=s")
	defer s.kill()
	if f := s.next(t, 5*time.Second); f.number != 1 {
		t.Fatalf("first frame %d", f.number)
	}
	st := getStatus(t, srv.URL, "fresh")
	if !st.Connected || st.Offset != 0 || st.Lag != 1 || st.CommittedAt != nil {
		t.Fatalf("status = %+v, want connected at offset 0, lag 1, never committed", st)
	}
	if all := listStatus(t, srv.URL); len(all) != 1 || all[0].Name != "fresh" || !all[0].Connected {
		t.Fatalf("consumers = %+v", all)
	}
}

func TestConsumersEmpty(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	if all := listStatus(t, srv.URL); len(all) != 0 {
		t.Fatalf("GET /consumers on a fresh database = %+v", all)
	}
}

// TestSSEStartsAfterOffset covers where /consumer/{name}/sse starts: after
// the committed offset, else after Last-Event-Id, else at the beginning.
func TestSSEStartsAfterOffset(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for i := 1; i <= 6; i++ {
		srv.MustPost(t, fmt.Sprintf("orders/%d", i), testserver.Event{ID: fmt.Sprintf("o%d", i)})
		srv.MustPost(t, "other", testserver.Event{ID: fmt.Sprintf("x%d", i)})
	}
	// Orders are the odd numbers 1, 3, …, 11.
	tests := []struct {
		name        string
		commit      int64 // -1: none
		lastEventID string
		want        []int64
	}{
		{"FromBeginning", -1, "", []int64{1, 3, 5, 7, 9, 11}},
		{"AfterLastEventID", -1, "4", []int64{5, 7, 9, 11}},
		{"AfterCommit", 6, "", []int64{7, 9, 11}},
		{"CommitWinsOverLastEventID", 8, "2", []int64{9, 11}},
		{"CommitZeroWinsOverLastEventID", 0, "10", []int64{1, 3, 5, 7, 9, 11}},
		{"CommitAtHead", 12, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := "start-" + tt.name
			if tt.commit >= 0 {
				mustCommit(t, srv.URL, name, tt.commit)
			}
			var headers []string
			if tt.lastEventID != "" {
				headers = []string{"Last-Event-Id", tt.lastEventID}
			}
			s := mustOpenStream(t, srv.URL, "/consumer/"+name+"/sse?stream=orders/{id}&stream=live/"+tt.name, headers...)
			if got := s.resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control = %q", got)
			}
			for _, want := range tt.want {
				f := s.next(t, 5*time.Second)
				if f.number != want || f.data["fossileventnumber"] != float64(want) {
					t.Fatalf("frame %d (%v), want %d", f.number, f.data, want)
				}
				if stream, _ := f.data["fossilstream"].(string); !strings.HasPrefix(stream, "orders/") {
					t.Fatalf("frame of stream %v", f.data["fossilstream"])
				}
			}
			s.quiet(t, 200*time.Millisecond)
			// Then live events.
			n := srv.MustPost(t, "live/"+tt.name, testserver.Event{ID: "live-" + tt.name})
			if f := s.next(t, 5*time.Second); f.number != n {
				t.Fatalf("live frame %d, want %d", f.number, n)
			}
			if st := getStatus(t, srv.URL, name); !st.Connected {
				t.Errorf("status while streaming = %+v, want connected", st)
			}
		})
	}
}

func TestSSERejectsBadInput(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	tests := []struct {
		name, path  string
		headers     []string
		wantStatus  int
		wantInError string
	}{
		{"NoStream", "/consumer/c/sse", nil, http.StatusBadRequest, "stream"},
		{"BadTemplate", "/consumer/c/sse?stream=%7Bunclosed", nil, http.StatusBadRequest, "template"},
		{"BadLastEventID", "/consumer/c/sse?stream=a", []string{"Last-Event-Id", "x"}, http.StatusBadRequest, "Last-Event-Id"},
		{"EmptyLastEventID", "/consumer/c/sse?stream=a", []string{"Last-Event-Id", ""}, http.StatusBadRequest, "non-negative integer"},
		{"TooManyTemplates", "/consumer/c/sse?" + strings.Repeat("stream=a&", 65), nil, http.StatusBadRequest, "at most 64 stream templates"},
		{"UnknownParameter", "/consumer/c/sse?stream=a&type=x", nil, http.StatusBadRequest, `unknown query parameter "type"`},
		{"SlashInName", "/consumer/a%2Fb/sse?stream=a", nil, http.StatusBadRequest, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, res := openStream(t, srv.URL, tt.path, tt.headers...)
			if s != nil {
				t.Fatalf("stream opened, want %d", tt.wantStatus)
			}
			p := requireProblem(t, res, tt.wantStatus)
			if !strings.Contains(p.Detail, tt.wantInError) {
				t.Errorf("detail %q does not mention %q", p.Detail, tt.wantInError)
			}
		})
	}
	// A rejected request takes no lease.
	if all := listStatus(t, srv.URL); len(all) != 0 {
		t.Fatalf("consumers after rejected requests: %+v", all)
	}
}

func TestAckRoute(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	one := srv.MustPost(t, "s", testserver.Event{ID: "one", Source: "/a"})
	sharedA := srv.MustPost(t, "s", testserver.Event{ID: "shared", Source: "/a"})
	sharedB := srv.MustPost(t, "s", testserver.Event{ID: "shared", Source: "/b"})
	odd := srv.MustPost(t, "s", testserver.Event{ID: "with/slash and space", Source: "/a"})

	ackURL := func(id string) string { return srv.URL + "/events/" + url.PathEscape(id) + "/ack" }
	tests := []struct {
		name, id, body string
		wantStatus     int
		wantAck        int64 // the number acked by wantConsumer, when 204
		wantConsumer   string
	}{
		{"Ack", "one", `{"consumer_name":"c1"}`, http.StatusNoContent, one, "c1"},
		{"Twice", "one", `{"consumer_name":"c1"}`, http.StatusNoContent, one, "c1"},
		{"OtherConsumer", "one", `{"consumer_name":"c2","source":"/a"}`, http.StatusNoContent, one, "c2"},
		{"EscapedID", "with/slash and space", `{"consumer_name":"c1"}`, http.StatusNoContent, odd, "c1"},
		{"UnknownEvent", "nope", `{"consumer_name":"c1"}`, http.StatusNotFound, 0, ""},
		{"UnknownSource", "one", `{"consumer_name":"c1","source":"/b"}`, http.StatusNotFound, 0, ""},
		{"Ambiguous", "shared", `{"consumer_name":"c1"}`, http.StatusConflict, 0, ""},
		{"DisambiguatedA", "shared", `{"consumer_name":"c1","source":"/a"}`, http.StatusNoContent, sharedA, "c1"},
		{"DisambiguatedB", "shared", `{"consumer_name":"c3","source":"/b"}`, http.StatusNoContent, sharedB, "c3"},
		{"MissingConsumer", "one", `{"source":"/a"}`, http.StatusBadRequest, 0, ""},
		{"EmptyConsumer", "one", `{"consumer_name":""}`, http.StatusBadRequest, 0, ""},
		{"SlashInConsumer", "one", `{"consumer_name":"a/b"}`, http.StatusBadRequest, 0, ""},
		{"MalformedJSON", "one", `{"consumer_name":`, http.StatusBadRequest, 0, ""},
		{"NotAnObject", "one", `["c1"]`, http.StatusBadRequest, 0, ""},
		{"WrongType", "one", `{"consumer_name":7}`, http.StatusBadRequest, 0, ""},
		{"EmptyBody", "one", ``, http.StatusBadRequest, 0, ""},
	}
	for _, tt := range tests {
		res := do(t, http.MethodPost, ackURL(tt.id), tt.body, "Content-Type", "application/json")
		if tt.wantStatus != http.StatusNoContent {
			p := requireProblem(t, res, tt.wantStatus)
			t.Logf("%s: %s", tt.name, p.Detail)
			continue
		}
		if res.status != http.StatusNoContent {
			t.Fatalf("%s: status %d: %s", tt.name, res.status, res.body)
		}
		var n int64
		err := srv.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM fossil_acks WHERE number = $1 AND consumer = $2`, tt.wantAck, tt.wantConsumer).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("%s: %d ack rows for (%d, %s), err %v; want 1", tt.name, n, tt.wantAck, tt.wantConsumer, err)
		}
	}
	var total int64
	if err := srv.Pool.QueryRow(context.Background(), `SELECT count(*) FROM fossil_acks`).Scan(&total); err != nil || total != 5 {
		t.Fatalf("%d ack rows (err %v), want 5: acks are idempotent", total, err)
	}
	// Acks are not events: the log is unchanged.
	var head int64
	if err := srv.Pool.QueryRow(context.Background(), `SELECT last_number FROM fossil_head`).Scan(&head); err != nil || head != odd {
		t.Fatalf("head %d (err %v), want %d", head, err, odd)
	}
}

// TestNamesAreData checks that consumer names are matched literally, never
// as templates or patterns.
func TestNamesAreData(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for i := 1; i <= 5; i++ {
		srv.MustPost(t, "s", testserver.Event{ID: fmt.Sprintf("e%d", i)})
	}
	names := []string{"a{b}", "ax", "a{+b}", "a b", "50%", "a%7Bb%7D", "ü*", "a.b", "{name}", "a?b#c"}
	for i, name := range names {
		mustCommit(t, srv.URL, name, int64(i%5+1))
	}
	for i, name := range names {
		st := getStatus(t, srv.URL, name)
		if st.Name != name || st.Offset != int64(i%5+1) {
			t.Errorf("GET %q = %+v, want offset %d", name, st, i%5+1)
		}
	}
	all := listStatus(t, srv.URL)
	if len(all) != len(names) {
		t.Fatalf("GET /consumers lists %d, want %d: %+v", len(all), len(names), all)
	}
	byName := map[string]status{}
	for _, s := range all {
		byName[s.Name] = s
	}
	for _, name := range names {
		if _, ok := byName[name]; !ok {
			t.Errorf("GET /consumers lacks %q", name)
		}
	}

	// Exclusivity is per literal name: holding a{b} does not block ax.
	held := mustOpenStream(t, srv.URL, "/consumer/"+url.PathEscape("a{b}")+"/sse?stream=s")
	if f := held.next(t, 5*time.Second); f.number != 2 {
		t.Fatalf("a{b} starts at %d, want 2 (after its offset 1)", f.number)
	}
	ax := mustOpenStream(t, srv.URL, "/consumer/ax/sse?stream=s")
	if f := ax.next(t, 5*time.Second); f.number != 3 {
		t.Fatalf("ax starts at %d, want 3 (after its offset 2)", f.number)
	}
	_, res := openStream(t, srv.URL, "/consumer/"+url.PathEscape("a{b}")+"/sse?stream=s")
	requireProblem(t, res, http.StatusConflict)

	// Acks are per literal name too.
	res = do(t, http.MethodPost, srv.URL+"/events/e1/ack", `{"consumer_name":"a{b}"}`)
	if res.status != http.StatusNoContent {
		t.Fatalf("ack: %d %s", res.status, res.body)
	}
	var consumers []string
	rows, err := srv.Pool.Query(context.Background(), `SELECT consumer FROM fossil_acks`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, c)
	}
	if rows.Err() != nil || len(consumers) != 1 || consumers[0] != "a{b}" {
		t.Fatalf("acks by %v (err %v), want only a{b}", consumers, rows.Err())
	}
}
