package subscription_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// fast shortens retries and leases so scripted failures take milliseconds,
// and keeps each server's pool small: the tests of this package run in
// parallel, several servers each, on one PostgreSQL.
func fast(c *cmd.Config) {
	c.SubscriptionBackoff = 20 * time.Millisecond
	c.SubscriptionLease = time.Second
	c.MaxConns = 6
}

// call sends a JSON request and returns status, headers and body.
func call(t testing.TB, method, url string, body any, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

// create posts a subscription and requires a 201; it returns the object.
func create(t testing.TB, srv *testserver.Server, body any) map[string]any {
	t.Helper()
	code, hdr, out := call(t, http.MethodPost, srv.URL+"/subscriptions", body)
	if code != http.StatusCreated {
		t.Fatalf("create: status %d: %s", code, out)
	}
	var obj map[string]any
	if err := json.Unmarshal(out, &obj); err != nil {
		t.Fatal(err)
	}
	if want := "/subscriptions/" + obj["id"].(string); hdr.Get("Location") != want {
		t.Fatalf("Location %q, want %q", hdr.Get("Location"), want)
	}
	return obj
}

// get reads a subscription.
func get(t testing.TB, srv *testserver.Server, id string) map[string]any {
	t.Helper()
	code, _, out := call(t, http.MethodGet, srv.URL+"/subscriptions/"+id, nil)
	if code != http.StatusOK {
		t.Fatalf("get: status %d: %s", code, out)
	}
	var obj map[string]any
	if err := json.Unmarshal(out, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func status(t testing.TB, srv *testserver.Server, id string) map[string]any {
	t.Helper()
	return get(t, srv, id)["status"].(map[string]any)
}

// delivery is one request a webhook received.
type delivery struct {
	Number  int64
	Stream  string
	Seq     int64
	Status  int
	Header  http.Header
	Body    string
	Arrived time.Time
}

// webhook is an httptest sink that answers the handshake and each
// delivery with script(number, attempt) (204 when script is nil).
type webhook struct {
	*httptest.Server
	mu       sync.Mutex
	got      []delivery
	attempts map[int64]int
	script   func(number int64, attempt int) (status int, header http.Header)
	options  int
	notify   chan struct{}
}

func newWebhook(t testing.TB, script func(number int64, attempt int) (int, http.Header)) *webhook {
	t.Helper()
	wh := &webhook{attempts: map[int64]int{}, script: script, notify: make(chan struct{}, 1)}
	wh.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			wh.mu.Lock()
			wh.options++
			wh.mu.Unlock()
			w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
			w.WriteHeader(http.StatusOK)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n, _ := strconv.ParseInt(r.Header.Get("Ce-Fossileventnumber"), 10, 64)
		seq, _ := strconv.ParseInt(r.Header.Get("Ce-Fossilsequenceinstream"), 10, 64)
		wh.mu.Lock()
		wh.attempts[n]++
		attempt := wh.attempts[n]
		st, hdr := http.StatusNoContent, http.Header(nil)
		if wh.script != nil {
			st, hdr = wh.script(n, attempt)
		}
		wh.got = append(wh.got, delivery{Number: n, Stream: r.Header.Get("Ce-Fossilstream"), Seq: seq, Status: st, Header: r.Header.Clone(), Body: string(body), Arrived: time.Now()})
		wh.mu.Unlock()
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(st)
		select {
		case wh.notify <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(wh.Close)
	return wh
}

// deliveries returns a copy of what arrived.
func (wh *webhook) deliveries() []delivery {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return slices.Clone(wh.got)
}

// accepted returns the numbers answered 2xx, in arrival order.
func (wh *webhook) accepted() []int64 {
	var out []int64
	for _, d := range wh.deliveries() {
		if d.Status >= 200 && d.Status < 300 {
			out = append(out, d.Number)
		}
	}
	return out
}

// waitAccepted waits until n deliveries were answered 2xx.
func (wh *webhook) waitAccepted(t testing.TB, n int, timeout time.Duration) []int64 {
	t.Helper()
	testserver.Eventually(t, timeout, fmt.Sprintf("%d accepted deliveries", n), func() bool {
		return len(wh.accepted()) >= n
	})
	return wh.accepted()
}

func httpSub(url string, extra map[string]any) map[string]any {
	body := map[string]any{"protocol": "HTTP", "sink": url, "config": map[string]string{"startafter": "0"}}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

func (wh *webhook) optionsSent() int {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return wh.options
}
