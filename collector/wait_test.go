package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/collector"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/testserver"
)

func TestParseWaitConsumers(t *testing.T) {
	t.Parallel()
	const (
		def = 5 * time.Second
		max = 60 * time.Second
	)
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	type spec = collector.WaitSpec
	tests := []struct {
		name   string
		values []string
		want   []spec
		bad    string // non-empty: want a 400 whose message contains this
	}{
		{name: "None", values: nil, want: nil},
		{name: "Empty", values: []string{""}, want: nil},
		{name: "Bracketed", values: []string{"<a>; timeout=1000, <b>; timeout=500"}, want: []spec{{"a", ms(1000)}, {"b", ms(500)}}},
		{name: "Bare", values: []string{"a; timeout=1000, b; timeout=500"}, want: []spec{{"a", ms(1000)}, {"b", ms(500)}}},
		{name: "Mixed", values: []string{"<a>;timeout=1, b ;timeout=2"}, want: []spec{{"a", ms(1)}, {"b", ms(2)}}},
		{name: "Spaces", values: []string{"  <a>  ;  timeout = 1000  ,   b  ;  timeout=7  "}, want: []spec{{"a", ms(1000)}, {"b", ms(7)}}},
		{name: "QuotedTimeout", values: []string{`<a>; timeout="250"`}, want: []spec{{"a", ms(250)}}},
		{name: "ParamCaseInsensitive", values: []string{"<a>; Timeout=3"}, want: []spec{{"a", ms(3)}}},
		{name: "MissingTimeoutIsDefault", values: []string{"<a>, b"}, want: []spec{{"a", def}, {"b", def}}},
		{name: "TrailingSemicolon", values: []string{"<a>;"}, want: []spec{{"a", def}}},
		{name: "ZeroTimeout", values: []string{"a; timeout=0"}, want: []spec{{"a", 0}}},
		{name: "AtCap", values: []string{"a; timeout=60000"}, want: []spec{{"a", max}}},
		{name: "HugeIsCapped", values: []string{"a; timeout=999999999"}, want: []spec{{"a", max}}},
		{name: "BeyondInt64IsCapped", values: []string{"a; timeout=99999999999999999999999999"}, want: []spec{{"a", max}}},
		{name: "SeveralHeaderLines", values: []string{"<a>; timeout=1", "<b>; timeout=2"}, want: []spec{{"a", ms(1)}, {"b", ms(2)}}},
		{name: "EmptyItemsSkipped", values: []string{", <a>, ,"}, want: []spec{{"a", def}}},
		{name: "NameKeepsBraces", values: []string{"<a{b}>; timeout=1, ax"}, want: []spec{{"a{b}", ms(1)}, {"ax", def}}},
		{name: "NameWithInnerSpace", values: []string{"<a b>"}, want: []spec{{"a b", def}}},
		{name: "Unicode", values: []string{"<ü>; timeout=1"}, want: []spec{{"ü", ms(1)}}},

		{name: "NegativeTimeout", values: []string{"a; timeout=-1"}, bad: "non-negative"},
		{name: "SignedTimeout", values: []string{"a; timeout=+5"}, bad: "non-negative"},
		{name: "TextTimeout", values: []string{"a; timeout=soon"}, bad: "non-negative"},
		{name: "FractionTimeout", values: []string{"a; timeout=1.5"}, bad: "non-negative"},
		{name: "EmptyTimeout", values: []string{"a; timeout="}, bad: "non-negative"},
		{name: "UnknownParam", values: []string{"a; rel=next"}, bad: "unknown parameter"},
		{name: "ParamWithoutValue", values: []string{"a; timeout"}, bad: "unknown parameter"},
		{name: "Unclosed", values: []string{"<a; timeout=1"}, bad: "not closed"},
		{name: "JunkAfterName", values: []string{"<a> b; timeout=1"}, bad: "expected ';'"},
		{name: "EmptyBrackets", values: []string{"<>"}, bad: "required"},
		{name: "EmptyBareName", values: []string{"; timeout=5"}, bad: "required"},
		{name: "Duplicate", values: []string{"<a>, a"}, bad: "twice"},
		{name: "DuplicateAcrossLines", values: []string{"a", "<a>"}, bad: "twice"},
		{name: "CommaInName", values: []string{"<a,b>"}, bad: "cannot be waited for"},
		{name: "BracketInName", values: []string{"<a<b>"}, bad: "cannot be waited for"},
		{name: "NestedBrackets", values: []string{"<<a>>"}, bad: "expected ';'"},
		{name: "SlashInName", values: []string{"<a/b>"}, bad: "/"},
		{name: "TooMany", values: []string{manyConsumers(33)}, bad: "at most 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := collector.ParseWaitConsumers(tt.values, def, max)
			if tt.bad != "" {
				var inv *fossil.InvalidError
				if !errors.As(err, &inv) || !errors.Is(err, fossil.ErrInvalid) {
					t.Fatalf("ParseWaitConsumers(%q) = %v, %v; want an invalid-input error", tt.values, got, err)
				}
				if inv.Location != "header.Fossil-Wait-Consumer" || !strings.Contains(err.Error(), tt.bad) {
					t.Fatalf("error %q at %q, want one at header.Fossil-Wait-Consumer containing %q", err, inv.Location, tt.bad)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWaitConsumers(%q): %v", tt.values, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseWaitConsumers(%q) = %v, want %v", tt.values, got, tt.want)
			}
		})
	}
	if got, err := collector.ParseWaitConsumers([]string{manyConsumers(32)}, def, max); err != nil || len(got) != 32 {
		t.Fatalf("32 consumers: %d, %v", len(got), err)
	}
}

func manyConsumers(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("<c%d>", i)
	}
	return strings.Join(names, ", ")
}

// FuzzParseWaitConsumers checks that the parser never panics and that what
// it accepts is usable: valid, distinct names that fit in the
// comma-separated fossilexpectack, timeouts within [0, max], at most 32,
// and a canonical rendering that parses back to the same specs.
func FuzzParseWaitConsumers(f *testing.F) {
	for _, seed := range []string{
		"", "<a>; timeout=1000, <b>; timeout=500", "a, b", "<a{b}>", "<a", "<>", "a; timeout=-1",
		"a; timeout=99999999999999999999", "a;;timeout=1;", "<a>>, <<b>", "a,,b", `<a>; timeout="7"`,
		"a; TIMEOUT = 3 , b", "<ü>", "<a b>; timeout=0",
	} {
		f.Add(seed)
	}
	const (
		def = 5 * time.Second
		max = 60 * time.Second
	)
	f.Fuzz(func(t *testing.T, value string) {
		specs, err := collector.ParseWaitConsumers([]string{value}, def, max)
		if err != nil {
			var inv *fossil.InvalidError
			if !errors.As(err, &inv) || inv.Location != "header.Fossil-Wait-Consumer" {
				t.Fatalf("error %v is not an invalid-input error about the header", err)
			}
			return
		}
		if len(specs) > 32 {
			t.Fatalf("%d specs accepted", len(specs))
		}
		seen := map[string]bool{}
		var canonical []string
		for _, s := range specs {
			if err := fossil.ValidateConsumerName("x", s.Name); err != nil {
				t.Fatalf("accepted invalid name %q: %v", s.Name, err)
			}
			if strings.ContainsAny(s.Name, ",<>;") {
				t.Fatalf("accepted name %q that cannot be listed in fossilexpectack", s.Name)
			}
			if seen[s.Name] {
				t.Fatalf("accepted %q twice", s.Name)
			}
			seen[s.Name] = true
			if s.Timeout < 0 || s.Timeout > max || s.Timeout%time.Millisecond != 0 {
				t.Fatalf("timeout %v of %q out of range", s.Timeout, s.Name)
			}
			canonical = append(canonical, fmt.Sprintf("<%s>; timeout=%d", s.Name, s.Timeout.Milliseconds()))
		}
		again, err := collector.ParseWaitConsumers([]string{strings.Join(canonical, ", ")}, def, max)
		if err != nil || !slices.Equal(again, specs) {
			t.Fatalf("canonical form %q parses to %v, %v; want %v", canonical, again, err, specs)
		}
	})
}

// waitResult is a read /collect response and how long it took.
type waitResult struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
	err     error
}

// waitClient has no keep-alive, so that a finished request leaves no
// connection goroutine behind on the server.
var waitClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}

// waitPost posts one binary-mode event to base/collect with extra header
// pairs. It is safe to call from any goroutine.
func waitPost(ctx context.Context, base, stream, id string, headers ...string) waitResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/collect", strings.NewReader(`{"id":"`+id+`"}`))
	if err != nil {
		return waitResult{err: err}
	}
	h := req.Header
	h.Set("Fossil-Stream", stream)
	h.Set("Content-Type", "application/json")
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", "/wait")
	h.Set("ce-type", "test.waited")
	for i := 0; i+1 < len(headers); i += 2 {
		h.Add(headers[i], headers[i+1])
	}
	start := time.Now()
	resp, err := waitClient.Do(req)
	if err != nil {
		return waitResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return waitResult{status: resp.StatusCode, header: resp.Header, body: body, elapsed: time.Since(start), err: err}
}

// waitPostAsync runs waitPost in a goroutine.
func waitPostAsync(ctx context.Context, base, stream, id string, headers ...string) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() { ch <- waitPost(ctx, base, stream, id, headers...) }()
	return ch
}

// waitAck acks the event with CloudEvent id as consumer on base.
func waitAck(t testing.TB, base, id, consumer string) {
	t.Helper()
	if err := tryAck(base, id, "", consumer); err != nil {
		t.Fatal(err)
	}
}

func tryAck(base, id, source, consumer string) error {
	body, _ := json.Marshal(map[string]string{"consumer_name": consumer, "source": source})
	resp, err := waitClient.Post(base+"/events/"+url.PathEscape(id)+"/ack", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("ack %s by %s: status %d: %s", id, consumer, resp.StatusCode, b)
	}
	return nil
}

// receive waits for the response, failing the test after timeout.
func receive(t testing.TB, ch <-chan waitResult, timeout time.Duration) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("POST /collect: %v", r.err)
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("no /collect response within %v", timeout)
	}
	return waitResult{}
}

// requireWaitOutcome checks status and Fossil-Timeout (empty: absent) and
// that the body reports the stored event; it returns its number.
func requireWaitOutcome(t testing.TB, r waitResult, status int, timedOut string) int64 {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if got := r.header.Get("Fossil-Timeout"); got != timedOut {
		t.Fatalf("Fossil-Timeout = %q, want %q", got, timedOut)
	}
	if vs := r.header.Values("Fossil-Timeout"); len(vs) > 1 {
		t.Fatalf("Fossil-Timeout sent %d times", len(vs))
	}
	var body struct {
		Events []struct {
			Number int64 `json:"fossileventnumber"`
		} `json:"events"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Events) == 0 {
		t.Fatalf("body %s: %v", r.body, err)
	}
	n := body.Events[len(body.Events)-1].Number
	if got := r.header.Get("Fossil-Event-Number"); got != strconv.FormatInt(n, 10) {
		t.Fatalf("Fossil-Event-Number = %q, body says %d", got, n)
	}
	return n
}

// requireStoredExpectAck checks that event n is stored with fossilexpectack.
func requireStoredExpectAck(t testing.TB, base string, n int64, want string) {
	t.Helper()
	resp, err := waitClient.Get(base + "/events/" + strconv.FormatInt(n, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ev map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events/%d: %d %v", n, resp.StatusCode, err)
	}
	if ev["fossilexpectack"] != want {
		t.Fatalf("stored event %d has fossilexpectack %v, want %q", n, ev["fossilexpectack"], want)
	}
}

// TestWaitForAck covers wait-for-ack end to end with two servers on one
// database (two processes): who acks decides the status and exactly who is
// named in Fossil-Timeout; the event is stored either way.
func TestWaitForAck(t *testing.T) {
	t.Parallel()
	a := testserver.Start(t)
	b := testserver.StartOn(t, a.DBURL)

	// Each case has consumers "<case>-first" and "<case>-second"; ackers
	// lists which ack (and on which server), after the writer's request
	// is in flight and the event was delivered to them over SSE.
	type acker struct {
		who      string // "first" or "second"
		onB      bool   // connect and ack through server B
		afterFor bool   // ack only after the first consumer's timeout passed
	}
	tests := []struct {
		name         string
		header       string // with %s for the case name
		ackers       []acker
		wantStatus   int
		wantTimedOut string // with %s for the case name
	}{
		{"OnlySecondAcks", "<%[1]s-first>; timeout=400, <%[1]s-second>; timeout=20000",
			[]acker{{who: "second"}}, http.StatusAccepted, "%s-first"},
		{"OnlySecondAcksLate", "<%[1]s-first>; timeout=200, <%[1]s-second>; timeout=20000",
			[]acker{{who: "second", afterFor: true}}, http.StatusAccepted, "%s-first"},
		{"OnlyFirstAcks", "<%[1]s-first>; timeout=20000, <%[1]s-second>; timeout=400",
			[]acker{{who: "first"}}, http.StatusAccepted, "%s-second"},
		{"BothAck", "<%[1]s-first>; timeout=20000, <%[1]s-second>; timeout=20000",
			[]acker{{who: "first"}, {who: "second"}}, http.StatusOK, ""},
		{"BothAckOneOnOtherServer", "<%[1]s-first>; timeout=20000, %[1]s-second; timeout=20000",
			[]acker{{who: "first"}, {who: "second", onB: true}}, http.StatusOK, ""},
		{"AckOnOtherServer", "%[1]s-first; timeout=20000",
			[]acker{{who: "first", onB: true}}, http.StatusOK, ""},
		{"NoneAck", "<%[1]s-first>; timeout=300, <%[1]s-second>; timeout=200",
			nil, http.StatusAccepted, "%[1]s-first,%[1]s-second"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream := "wait/" + tt.name
			// The ackers read the event over /consumer/{name}/sse first.
			sses := map[string]*testserver.SSE{}
			for _, ak := range tt.ackers {
				srv := a
				if ak.onB {
					srv = b
				}
				sses[ak.who] = srv.OpenSSE(t, fmt.Sprintf("/consumer/%s-%s/sse?stream=%s", tt.name, ak.who, stream))
				if sses[ak.who].Err() != nil {
					t.Fatal(sses[ak.who].Err())
				}
			}
			header := fmt.Sprintf(tt.header, tt.name)
			pending := waitPostAsync(context.Background(), a.URL, stream, tt.name, "Fossil-Wait-Consumer", header)
			start := time.Now()
			wantExpect := tt.name + "-first," + tt.name + "-second"
			if tt.name == "AckOnOtherServer" {
				wantExpect = tt.name + "-first"
			}
			for _, ak := range tt.ackers {
				f := sses[ak.who].Next(t, 1, 10*time.Second)[0]
				if f.Event["id"] != tt.name || f.Event["fossilexpectack"] != wantExpect {
					t.Fatalf("%s received %s; want the event with fossilexpectack %q", ak.who, f.Data, wantExpect)
				}
				if ak.afterFor {
					time.Sleep(time.Until(start.Add(400 * time.Millisecond)))
				}
				srv := a
				if ak.onB {
					srv = b
				}
				waitAck(t, srv.URL, tt.name, tt.name+"-"+ak.who)
			}
			r := receive(t, pending, 30*time.Second)
			want := ""
			if tt.wantTimedOut != "" {
				want = fmt.Sprintf(tt.wantTimedOut, tt.name)
			}
			n := requireWaitOutcome(t, r, tt.wantStatus, want)
			if r.elapsed > 15*time.Second {
				t.Errorf("answered after %v: it waited for a consumer that had acked", r.elapsed)
			}
			// Stored either way, with the consumers waited for.
			requireStoredExpectAck(t, b.URL, n, wantExpect)
		})
	}
}

// TestWaitForAckIdempotentRetry retries a request whose event was already
// stored and acked: the answer is 200 at once, marked as a duplicate.
func TestWaitForAckIdempotentRetry(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	const header = "<retry-c>; timeout=30000"
	sse := srv.OpenSSE(t, "/consumer/retry-c/sse?stream=retry")
	pending := waitPostAsync(context.Background(), srv.URL, "retry", "r1", "Fossil-Wait-Consumer", header)
	sse.Next(t, 1, 10*time.Second)
	waitAck(t, srv.URL, "r1", "retry-c")
	first := receive(t, pending, 30*time.Second)
	n := requireWaitOutcome(t, first, http.StatusOK, "")

	for i := range 3 {
		again := waitPost(context.Background(), srv.URL, "retry", "r1", "Fossil-Wait-Consumer", header)
		if again.err != nil {
			t.Fatal(again.err)
		}
		if got := requireWaitOutcome(t, again, http.StatusOK, ""); got != n {
			t.Fatalf("retry %d: event number %d, want %d", i, got, n)
		}
		if again.header.Get("Fossil-Duplicate") != "true" {
			t.Fatalf("retry %d: no Fossil-Duplicate: true", i)
		}
		if again.elapsed > 5*time.Second {
			t.Fatalf("retry %d took %v: it waited for an ack that was already there", i, again.elapsed)
		}
	}
	// A retry of a stored event nobody acked still waits, and times out.
	srv.MustPost(t, "retry", testserver.Event{ID: "r2", Source: "/wait", Type: "test.waited", Data: `{"id":"r2"}`})
	r := waitPost(context.Background(), srv.URL, "retry", "r2", "Fossil-Wait-Consumer", "<retry-c>; timeout=200")
	if r.err != nil {
		t.Fatal(r.err)
	}
	requireWaitOutcome(t, r, http.StatusAccepted, "retry-c")
	if r.header.Get("Fossil-Duplicate") != "true" {
		t.Fatalf("no Fossil-Duplicate: true on the retry of r2")
	}
}

// TestWaitForAckBatch waits for every event of a batch: a consumer that
// acked only some of them times out.
func TestWaitForAckBatch(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	batchBody := func(ids ...string) []byte {
		var evs []map[string]any
		for _, id := range ids {
			evs = append(evs, map[string]any{"specversion": "1.0", "id": id, "source": "/wait", "type": "test.waited"})
		}
		b, _ := json.Marshal(evs)
		return b
	}
	post := func(ids []string, header string) <-chan waitResult {
		ch := make(chan waitResult, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/collect", bytes.NewReader(batchBody(ids...)))
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
			req.Header.Set("Fossil-Stream", "batch")
			req.Header.Set("Fossil-Wait-Consumer", header)
			start := time.Now()
			resp, err := waitClient.Do(req)
			if err != nil {
				ch <- waitResult{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			ch <- waitResult{status: resp.StatusCode, header: resp.Header, body: body, elapsed: time.Since(start), err: err}
		}()
		return ch
	}
	sse := srv.OpenSSE(t, "/consumer/batch-c/sse?stream=batch")

	partial := post([]string{"p1", "p2", "p3"}, "batch-c; timeout=1500")
	for _, f := range sse.Next(t, 3, 10*time.Second) {
		if f.Event["fossilexpectack"] != "batch-c" {
			t.Fatalf("frame %s", f.Data)
		}
		if id := f.Event["id"].(string); id != "p3" {
			waitAck(t, srv.URL, id, "batch-c")
		}
	}
	requireWaitOutcome(t, receive(t, partial, 30*time.Second), http.StatusAccepted, "batch-c")

	whole := post([]string{"w1", "w2", "w3"}, "batch-c; timeout=20000")
	for _, f := range sse.Next(t, 3, 10*time.Second) {
		waitAck(t, srv.URL, f.Event["id"].(string), "batch-c")
	}
	r := receive(t, whole, 30*time.Second)
	requireWaitOutcome(t, r, http.StatusOK, "")
	if r.elapsed > 15*time.Second {
		t.Fatalf("answered after %v", r.elapsed)
	}
}

// TestWaitForAckTimeoutConfig checks that a missing timeout means the
// configured default and that timeouts are capped by the configured max.
func TestWaitForAckTimeoutConfig(t *testing.T) {
	t.Parallel()
	const (
		def = 300 * time.Millisecond
		max = 3 * time.Second // far from def, so a loaded machine cannot blur them
	)
	srv := testserver.Start(t, func(c *cmd.Config) {
		c.WaitTimeout = def
		c.MaxWaitTimeout = max
	})
	tests := []struct {
		name   string
		header string
		min    time.Duration // the request must wait at least this long
		limit  time.Duration // and answer well before this
	}{
		{"Default", "nobody", def, max},
		{"DefaultBracketed", "<nobody>", def, max},
		{"Explicit", "nobody; timeout=600", 600 * time.Millisecond, 10 * time.Second},
		{"Capped", "nobody; timeout=3600000", max, 10 * time.Second},
		{"CappedBeyondInt64", "nobody; timeout=99999999999999999999999", max, 10 * time.Second},
		{"Zero", "nobody; timeout=0", 0, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := waitPost(context.Background(), srv.URL, "cfg", tt.name, "Fossil-Wait-Consumer", tt.header)
			if r.err != nil {
				t.Fatal(r.err)
			}
			requireWaitOutcome(t, r, http.StatusAccepted, "nobody")
			if r.elapsed < tt.min || r.elapsed > tt.limit {
				t.Fatalf("answered after %v, want between %v and %v", r.elapsed, tt.min, tt.limit)
			}
		})
	}

	// A bad header is refused before anything is stored.
	for _, h := range []string{"<nobody", "nobody; timeout=-5", "a, a", "nobody; wait=5"} {
		r := waitPost(context.Background(), srv.URL, "cfg-bad", "bad", "Fossil-Wait-Consumer", h)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%q: status %d %s", h, r.status, r.body)
		}
		var p struct {
			Type, Title, Detail string
			Status              int
		}
		if err := json.Unmarshal(r.body, &p); err != nil || p.Status != 400 || p.Title == "" || !strings.Contains(p.Detail, "Fossil-Wait-Consumer") {
			t.Fatalf("%q: problem %s", h, r.body)
		}
	}
	resp, err := waitClient.Get(srv.URL + "/streams/cfg-bad/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("a refused request stored %s", b)
	}
}

// labelKey marks the goroutines of one test's server (see
// testserver.LabelKey).
const labelKey = testserver.LabelKey

// goroutineCounts counts the goroutines labelled value: all of them but
// the database pools' own (health checks and connection set-up, which come
// and go with the pools, not with requests; the shared pool that creates
// test databases may carry the label of whichever test opened it), those
// serving an HTTP connection and those waiting for acks.
func goroutineCounts(t testing.TB, value string) (total, conns, waiting int) {
	t.Helper()
	total, in := testserver.Goroutines(value, "net/http.(*conn).serve", "collector.(*Handler).waitAcks",
		"github.com/jackc/pgx/v5/pgxpool.", "github.com/jackc/puddle/")
	return total - in[2] - in[3], in[0], in[1]
}

// TestWaitForAckClientGoesAway checks that requests whose clients leave
// while waiting free their goroutines at once (not at their timeout).
func TestWaitForAckClientGoesAway(t *testing.T) {
	t.Parallel()
	label := fmt.Sprintf("%p", t)
	var srv *testserver.Server
	pprof.Do(context.Background(), pprof.Labels(labelKey, label), func(context.Context) {
		srv = testserver.Start(t)
	})
	// Warm up (pool connections, appender), then settle.
	if r := waitPost(context.Background(), srv.URL, "gone", "warm"); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("warm-up: %v %d", r.err, r.status)
	}
	// The baseline is the most goroutines an idle server shows over a
	// second: on a loaded machine some of its background goroutines start
	// a little after it answers.
	var base int
	waitForCond(t, 5*time.Second, "an idle server", func() bool {
		_, conns, waiting := goroutineCounts(t, label)
		return conns == 0 && waiting == 0
	})
	for settle := time.Now().Add(time.Second); time.Now().Before(settle); time.Sleep(50 * time.Millisecond) {
		total, _, _ := goroutineCounts(t, label)
		base = max(base, total)
	}

	const n = 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	results := make([]waitResult, n)
	for i := range n {
		wg.Go(func() {
			results[i] = waitPost(ctx, srv.URL, "gone", fmt.Sprintf("g%d", i), "Fossil-Wait-Consumer", "ghost; timeout=60000")
		})
	}
	waitForCond(t, 10*time.Second, "every request to be waiting", func() bool {
		_, _, waiting := goroutineCounts(t, label)
		return waiting == n
	})
	total, conns, _ := goroutineCounts(t, label)
	t.Logf("baseline %d goroutines; %d while %d requests wait (%d serving connections)", base, total, n, conns)

	cancel()
	wg.Wait()
	for i, r := range results {
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("request %d: %v (status %d), want it cancelled", i, r.err, r.status)
		}
	}
	start := time.Now()
	var last string
	waitForCond(t, 15*time.Second, "goroutines back to the baseline", func() bool {
		total, conns, waiting := goroutineCounts(t, label)
		last = fmt.Sprintf("%d goroutines (baseline %d), %d serving connections, %d waiting", total, base, conns, waiting)
		return conns == 0 && waiting == 0 && total <= base
	}, &last)
	t.Logf("back to the baseline %v after the clients left", time.Since(start).Round(time.Millisecond))

	// The events were stored anyway.
	var stored int
	if err := srv.Pool.QueryRow(context.Background(), `SELECT count(*) FROM fossil_events WHERE stream = 'gone'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n+1 {
		t.Fatalf("%d events stored, want %d", stored, n+1)
	}
}

// waitForCond polls cond until it holds or fails after timeout.
func waitForCond(t testing.TB, timeout time.Duration, what string, cond func() bool, state ...*string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if len(state) > 0 {
				t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, *state[0])
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkWaitForAck measures the round trip of a wait-for-ack /collect:
// commit, delivery over /consumer/{name}/sse to a consumer that acks at
// once, the ack's NOTIFY back to the waiting writer, and the 200. The
// consumer is connected to the writer's server ("same") or to another
// server on the same database ("other"). Reports p50 and p99.
//
//	go test -run '^$' -bench WaitForAck -benchtime 500x ./collector
func BenchmarkWaitForAck(b *testing.B) {
	for _, where := range []string{"same", "other"} {
		b.Run(where, func(b *testing.B) {
			writer := testserver.Start(b)
			ackSide := writer
			if where == "other" {
				ackSide = testserver.StartOn(b, writer.DBURL)
			}
			stop := runAcker(b, ackSide.URL, "bench-acker", "bench")
			defer stop()

			latencies := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				r := waitPost(context.Background(), writer.URL, "bench", fmt.Sprintf("b%d-%d", i, time.Now().UnixNano()),
					"Fossil-Wait-Consumer", "bench-acker; timeout=10000")
				i++
				if r.err != nil || r.status != http.StatusOK {
					b.Fatalf("status %d err %v: %s", r.status, r.err, r.body)
				}
				latencies = append(latencies, r.elapsed)
			}
			b.StopTimer()
			slices.Sort(latencies)
			pct := func(p float64) time.Duration { return latencies[int(float64(len(latencies)-1)*p)] }
			b.ReportMetric(float64(pct(0.50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(pct(0.99).Microseconds()), "p99-µs")
		})
	}
}

// runAcker connects consumer to /consumer/{consumer}/sse?stream=stream on
// base and acks every event it receives, until stop is called.
func runAcker(tb testing.TB, base, consumer, stream string) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/consumer/"+consumer+"/sse?stream="+stream, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		tb.Fatalf("acker: %v %v", err, resp)
	}
	ackClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = testserver.ReadFrames(resp.Body, func(f testserver.Frame) error {
			id, _ := f.Event["id"].(string)
			source, _ := f.Event["source"].(string)
			if id == "" {
				return nil
			}
			body, _ := json.Marshal(map[string]string{"consumer_name": consumer, "source": source})
			r, err := ackClient.Post(base+"/events/"+url.PathEscape(id)+"/ack", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			return nil
		}, nil)
	}()
	return func() {
		cancel()
		<-done
		resp.Body.Close()
		ackClient.CloseIdleConnections()
	}
}
