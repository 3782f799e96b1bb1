//go:build unix

package streamer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// EnvChromium names the Chromium (or Chrome) binary to use instead of the
// first of chromiumPaths found.
const EnvChromium = "FOSSIL_CHROMIUM"

var chromiumPaths = []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"}

// browserPage subscribes with EventSource, shows what it receives and
// reports every change to /report, carrying the whole list each time so
// that reports overtaking each other lose nothing.
const browserPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>waiting</title></head>
<body><ol id="events"></ol>
<script>
const ids = [];
const numbers = [];
let opens = 0, errors = 0;
function report(kind) {
  fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({kind, ids, numbers, opens, errors})});
}
const es = new EventSource("/sse?stream=" + encodeURIComponent("browser/{id}"));
es.onopen = () => { opens++; report("open"); };
es.onerror = () => { errors++; report("error"); };
es.onmessage = (e) => {
  const ev = JSON.parse(e.data);
  ids.push(e.lastEventId);
  numbers.push(ev.fossileventnumber);
  const li = document.createElement("li");
  li.textContent = e.lastEventId + " " + ev.id;
  document.getElementById("events").appendChild(li);
  document.title = "received " + ids.length;
  report("message");
};
</script></body></html>`

// browserReport is what the page posts to /report.
type browserReport struct {
	Kind    string   `json:"kind"`
	IDs     []string `json:"ids"`
	Numbers []int64  `json:"numbers"`
	Opens   int      `json:"opens"`
	Errors  int      `json:"errors"`
}

// TestBrowserEventSource runs a page in headless Chromium whose EventSource
// follows a Fossil server through a same-origin reverse proxy. After five
// live events the Fossil server is shut down (a second server process on the
// same database takes over behind the proxy), which ends the stream; five
// events are written while the browser is disconnected. The browser
// reconnects by itself, sends Last-Event-ID: 5, and receives the missed
// events and later live ones: 1..13 exactly once, in order.
func TestBrowserEventSource(t *testing.T) {
	t.Parallel()
	chromium := findChromium(t)

	first := testserver.Start(t)
	second := testserver.StartOn(t, first.DBURL)
	var upstream atomic.Pointer[url.URL]
	u, _ := url.Parse(first.URL)
	upstream.Store(u)

	var (
		mu        sync.Mutex
		latest    browserReport
		sseLastID []string // Last-Event-Id of each /sse request the proxy saw
	)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream.Load())
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(browserPage))
	})
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sseLastID = append(sseLastID, r.Header.Get("Last-Event-Id"))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep browserReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		if len(rep.IDs) >= len(latest.IDs) && rep.Opens >= latest.Opens && rep.Errors >= latest.Errors {
			latest = rep
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /favicon.ico", http.NotFound)
	page := httptest.NewServer(mux)
	t.Cleanup(page.Close) // after the browser is killed (cleanups run last-in first-out)

	state := func() (browserReport, []string) {
		mu.Lock()
		defer mu.Unlock()
		return latest, slices.Clone(sseLastID)
	}
	runChromium(t, chromium, page.URL+"/")

	testserver.Eventually(t, 60*time.Second, "the page's EventSource to open", func() bool {
		r, _ := state()
		return r.Opens >= 1
	})
	postTo := func(srv *testserver.Server, from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			srv.MustPost(t, fmt.Sprintf("browser/%d", i%2), testserver.Event{ID: fmt.Sprintf("b%d", i)})
		}
	}
	received := func(n int) func() bool {
		return func() bool {
			r, _ := state()
			return len(r.IDs) >= n
		}
	}
	postTo(first, 1, 5)
	testserver.Eventually(t, 20*time.Second, "5 events in the browser", received(5))

	// The server goes away; a second process serves from now on.
	uu, _ := url.Parse(second.URL)
	upstream.Store(uu)
	if err := first.Close(); err != nil {
		t.Fatalf("close the first server: %v", err)
	}
	testserver.Eventually(t, 20*time.Second, "the EventSource to notice the lost connection", func() bool {
		r, _ := state()
		return r.Errors >= 1
	})
	postTo(second, 6, 10) // while the browser waits to reconnect
	testserver.Eventually(t, 30*time.Second, "10 events in the browser", received(10))
	postTo(second, 11, 13)
	testserver.Eventually(t, 20*time.Second, "13 events in the browser", received(13))

	r, lastIDs := state()
	want := seq(1, 13)
	var gotIDs []int64
	for _, id := range r.IDs {
		var n int64
		_, _ = fmt.Sscan(id, &n)
		gotIDs = append(gotIDs, n)
	}
	if !slices.Equal(gotIDs, want) || !slices.Equal(r.Numbers, want) {
		t.Fatalf("the browser received ids %v (fossileventnumber %v), want %v", r.IDs, r.Numbers, want)
	}
	if len(lastIDs) < 2 || lastIDs[0] != "" || lastIDs[1] != "5" {
		t.Fatalf("Last-Event-Id of the browser's requests: %q, want \"\" then \"5\"", lastIDs)
	}
	t.Logf("EventSource: %d opens, %d errors, requests with Last-Event-Id %q", r.Opens, r.Errors, lastIDs)
}

// findChromium returns the browser binary, or fails with what to install
// (`make test` installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		return p
	}
	for _, p := range chromiumPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("headless Chromium is needed for this test: run `make test` (it installs it), "+
		"or apt-get install chromium, or set %s to a Chrome binary", EnvChromium)
	return ""
}

// runChromium starts headless Chromium on pageURL in its own process group
// and kills the whole group when the test ends.
func runChromium(t *testing.T, chromium, pageURL string) {
	t.Helper()
	profile := t.TempDir()
	cmd := exec.Command(chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--no-proxy-server", "--disable-extensions",
		"--user-data-dir="+filepath.Join(profile, "profile"),
		pageURL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we created: browser, renderer, GPU process…
		<-exited
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
}
