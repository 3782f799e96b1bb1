package subscription_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// checkOrder fails unless, within each stream, the accepted deliveries
// arrived in increasing number order.
func checkOrder(t testing.TB, ds []delivery) {
	t.Helper()
	last := map[string]int64{}
	for _, d := range ds {
		if d.Status < 200 || d.Status > 299 {
			continue
		}
		if d.Number <= last[d.Stream] {
			t.Fatalf("stream %s: event %d delivered after %d", d.Stream, d.Number, last[d.Stream])
		}
		last[d.Stream] = d.Number
	}
}

func TestWebhookDeliversMatchingEventsInStreamOrder(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	wh := newWebhook(t, nil)
	var want []int64
	for i := range 5 {
		for _, s := range []string{"orders/1", "orders/2", "orders/3"} {
			typ := "order.placed"
			if i == 2 {
				typ = "order.shipped"
			}
			n := srv.MustPost(t, s, testserver.Event{ID: fmt.Sprintf("%s-%d", s, i), Type: typ, Source: "/shop", Data: fmt.Sprintf(`{"i":%d}`, i)})
			if typ == "order.placed" {
				want = append(want, n)
			}
		}
		srv.MustPost(t, "audit/1", testserver.Event{ID: fmt.Sprintf("audit-%d", i), Type: "order.placed"})
	}
	obj := create(t, srv, httpSub(wh.URL, map[string]any{
		"sinkcredential":   map[string]any{"credentialtype": "ACCESSTOKEN", "accesstoken": "tok"},
		"protocolsettings": map[string]any{"headers": map[string]string{"X-Team": "billing"}},
		"filters":          []any{map[string]any{"sql": "type = 'order.placed' AND fossilstream LIKE 'orders/%'"}},
		"config":           map[string]string{"startafter": "0", "streams": "orders/{id}"},
	}))
	id := obj["id"].(string)
	got := wh.waitAccepted(t, len(want), 10*time.Second)
	// Live events follow without a poll.
	live := srv.MustPost(t, "orders/2", testserver.Event{ID: "live", Type: "order.placed", Source: "/shop"})
	want = append(want, live)
	got = wh.waitAccepted(t, len(want), 10*time.Second)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want each of %v once", got, want)
	}
	ds := wh.deliveries()
	if len(ds) != len(want) {
		t.Fatalf("%d requests for %d events", len(ds), len(want))
	}
	checkOrder(t, ds)
	d := ds[0]
	h := d.Header
	for k, v := range map[string]string{
		"Ce-Specversion": "1.0", "Ce-Source": "/shop", "Ce-Type": "order.placed",
		"Content-Type": "application/json", "Authorization": "Bearer tok", "X-Team": "billing",
	} {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	if h.Get("Ce-Id") == "" || h.Get("Ce-Fossilstream") != d.Stream || !strings.HasPrefix(d.Stream, "orders/") || d.Seq < 1 {
		t.Errorf("fossil extensions: %v", h)
	}
	if !strings.HasPrefix(d.Body, `{"i":`) {
		t.Errorf("body %q is not the event data", d.Body)
	}
	testserver.Eventually(t, 5*time.Second, "status caught up", func() bool {
		st := status(t, srv, id)
		return st["delivered"] == float64(len(want)) && st["lag"] == 0.0 && st["position"] == float64(live)
	})
	if st := status(t, srv, id); st["lasterror"] != nil || st["parked"] != 0.0 {
		t.Fatalf("status %v", st)
	}
	checkMetrics(t, srv,
		fmt.Sprintf(`fossil_subscription_delivered_total{subscription=%q} %d`, id, len(want)),
		fmt.Sprintf(`fossil_subscription_attempts_total{subscription=%q} %d`, id, len(want)),
		fmt.Sprintf(`fossil_subscription_lag_events{subscription=%q} 0`, id),
		fmt.Sprintf(`fossil_subscription_parked_events{subscription=%q} 0`, id),
		`fossil_subscription_delivery_latency_seconds_count `+fmt.Sprint(len(want)))
}

// checkMetrics fails unless /metrics has each line.
func checkMetrics(t *testing.T, srv *testserver.Server, lines ...string) {
	t.Helper()
	code, _, out := call(t, http.MethodGet, srv.URL+"/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	for _, l := range lines {
		if !strings.Contains(string(out), "\n"+l+"\n") {
			t.Errorf("metrics lack %q", l)
		}
	}
}

func TestWebhookRetriesParksAndReplays(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	post := func(stream, id string) int64 { return srv.MustPost(t, stream, testserver.Event{ID: id}) }
	a := post("s1", "a") // 500, 500, then 204
	b := post("s1", "b") // 204, only after a
	c := post("s2", "c") // 404: parked at once
	d := post("s2", "d") // 204 after c is parked
	e := post("s3", "e") // 429 (Retry-After: 1) twice, then 204: not attempts
	g := post("s4", "g") // 503 always: parked after maxattempts (3)
	h := post("s4", "h") // 204 after g is parked
	var mu sync.Mutex
	healed := false
	wh := newWebhook(t, func(n int64, attempt int) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if healed {
			return http.StatusOK, nil
		}
		switch {
		case n == a && attempt <= 2:
			return http.StatusInternalServerError, nil
		case n == c:
			return http.StatusNotFound, nil
		case n == e && attempt <= 2:
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}
		case n == g:
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusNoContent, nil
	})
	obj := create(t, srv, httpSub(wh.URL, map[string]any{"config": map[string]string{"startafter": "0", "maxattempts": "3"}}))
	id := obj["id"].(string)
	wh.waitAccepted(t, 5, 15*time.Second) // a, b, d, e, h
	testserver.Eventually(t, 10*time.Second, "two parked", func() bool { return status(t, srv, id)["parked"] == 2.0 })

	ds := wh.deliveries()
	count := map[int64]int{}
	var eTimes []time.Time
	for _, x := range ds {
		count[x.Number]++
		if x.Number == e {
			eTimes = append(eTimes, x.Arrived)
		}
	}
	wantCount := map[int64]int{a: 3, b: 1, c: 1, d: 1, e: 3, g: 3, h: 1}
	for n, w := range wantCount {
		if count[n] != w {
			t.Errorf("event %d: %d requests, want %d (all: %v)", n, count[n], w, count)
		}
	}
	checkOrder(t, ds)
	// b waited for a, d for c's parking, h for g's.
	idx := func(n int64, status int) int {
		return slices.IndexFunc(ds, func(x delivery) bool { return x.Number == n && (status == 0 || x.Status == status) })
	}
	if idx(b, 0) < idx(a, http.StatusNoContent) || idx(d, 0) < idx(c, 0) || idx(h, 0) < slices.IndexFunc(ds, func(x delivery) bool { return x.Number == g && count[g] == 3 }) {
		t.Errorf("stream order not kept: %v", ds)
	}
	for i := 1; i < len(eTimes); i++ {
		if gap := eTimes[i].Sub(eTimes[i-1]); gap < 900*time.Millisecond {
			t.Errorf("429 with Retry-After: 1 retried after %s", gap)
		}
	}

	code, _, out := call(t, http.MethodGet, srv.URL+"/subscriptions/"+id+"/parked", nil)
	var parked struct {
		Parked []struct {
			Number    int64  `json:"fossileventnumber"`
			Attempts  int    `json:"attempts"`
			LastError string `json:"lasterror"`
			ParkedAt  string `json:"parkedat"`
		} `json:"parked"`
	}
	if code != http.StatusOK || json.Unmarshal(out, &parked) != nil || len(parked.Parked) != 2 {
		t.Fatalf("parked: %d %s", code, out)
	}
	p0, p1 := parked.Parked[0], parked.Parked[1]
	if p0.Number != c || p0.Attempts != 1 || p0.LastError != "HTTP 404 Not Found" || p1.Number != g || p1.Attempts != 3 || p1.LastError != "HTTP 503 Service Unavailable" || p0.ParkedAt == "" {
		t.Fatalf("parked list %s", out)
	}
	testserver.Eventually(t, 5*time.Second, "five delivered", func() bool { return status(t, srv, id)["delivered"] == 5.0 })
	if st := status(t, srv, id); st["lasterror"] == nil {
		t.Fatalf("status %v", st)
	}
	checkMetrics(t, srv,
		fmt.Sprintf(`fossil_subscription_failures_total{reason="rejected",subscription=%q} 1`, id),
		fmt.Sprintf(`fossil_subscription_failures_total{reason="retry",subscription=%q} 5`, id),
		fmt.Sprintf(`fossil_subscription_failures_total{reason="throttled",subscription=%q} 2`, id),
		fmt.Sprintf(`fossil_subscription_parked_total{subscription=%q} 2`, id),
		fmt.Sprintf(`fossil_subscription_parked_events{subscription=%q} 2`, id))

	// Unknown parked number → 404; replay delivers c and g again.
	if code, _, _ := call(t, http.MethodDelete, srv.URL+"/subscriptions/"+id+"/parked/"+fmt.Sprint(b), nil); code != http.StatusNotFound {
		t.Fatalf("drop unparked event: %d", code)
	}
	mu.Lock()
	healed = true
	mu.Unlock()
	if code, _, out := call(t, http.MethodPost, srv.URL+"/subscriptions/"+id+"/parked/replay", nil); code != http.StatusAccepted {
		t.Fatalf("replay: %d %s", code, out)
	}
	wh.waitAccepted(t, 7, 10*time.Second)
	testserver.Eventually(t, 10*time.Second, "parked list emptied", func() bool {
		st := status(t, srv, id)
		return st["parked"] == 0.0 && st["delivered"] == 7.0
	})
	acc := wh.accepted()
	slices.Sort(acc)
	if !slices.Equal(acc, []int64{a, b, c, d, e, g, h}) {
		t.Fatalf("accepted %v", acc)
	}
}

func TestWebhookGoneDisablesUntilPut(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	n1 := srv.MustPost(t, "s", testserver.Event{ID: "1"})
	n2 := srv.MustPost(t, "s", testserver.Event{ID: "2"})
	n3 := srv.MustPost(t, "s", testserver.Event{ID: "3"})
	wh := newWebhook(t, func(n int64, attempt int) (int, http.Header) {
		if n == n2 && attempt == 1 {
			return http.StatusGone, nil
		}
		return http.StatusNoContent, nil
	})
	body := httpSub(wh.URL, map[string]any{"config": map[string]string{"startafter": "0", "maxinflight": "1"}})
	id := create(t, srv, body)["id"].(string)
	testserver.Eventually(t, 10*time.Second, "disabled", func() bool { return status(t, srv, id)["state"] == "disabled" })
	st := status(t, srv, id)
	if st["position"] != float64(n1) || st["parked"] != 0.0 || st["lasterror"] != "HTTP 410 Gone" {
		t.Fatalf("status after 410: %v", st)
	}
	if code, _, out := call(t, http.MethodPut, srv.URL+"/subscriptions/"+id, body); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, out)
	}
	wh.waitAccepted(t, 3, 10*time.Second)
	var got []int64
	for _, d := range wh.deliveries() {
		got = append(got, d.Number)
	}
	if !slices.Equal(got, []int64{n1, n2, n2, n3}) {
		t.Fatalf("requests %v, want [%d %d %d %d]", got, n1, n2, n2, n3)
	}
	testserver.Eventually(t, 5*time.Second, "active again", func() bool {
		st := status(t, srv, id)
		return st["state"] == "active" && st["position"] == float64(n3)
	})
}
