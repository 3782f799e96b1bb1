package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// TestUIFiles: every path under /ui/ is the application's page (deep
// links), its files are served with a strict content security policy and
// revalidation, nothing they load comes from another host, and the
// console's own errors are problems.
func TestUIFiles(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for _, p := range []string{"/ui", "/ui/", "/ui/streams", "/ui/streams/orders%2F1", "/ui/streams/orders/1", "/ui/events/12", "/ui/tail?stream=%7B%2Ball%7D",
		"/ui/consumers", "/ui/subscriptions/abc", "/ui/schemas/order.placed", "/ui/no/such/page", "/ui/tail/x", "/ui/assets"} {
		code, hd, body := call(t, http.MethodGet, srv.URL+p, "", "")
		want := http.StatusOK
		if strings.HasPrefix(p, "/ui/no/") || p == "/ui/tail/x" || p == "/ui/assets" {
			want = http.StatusNotFound // the console's own "not found" page
		}
		if code != want || hd.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(body, `<script type="module" src="/ui/assets/app.js">`) {
			t.Errorf("GET %s: %d %s: %.200s", p, code, hd.Get("Content-Type"), body)
		}
		if csp := hd.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
	}

	// Every module the page loads, followed through its imports, exists
	// and names no other host.
	imports := regexp.MustCompile(`(?m)^import .* from "([^"]+)";|^\} from "([^"]+)";`)
	hostRef := regexp.MustCompile(`(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	seen := map[string]bool{}
	queue := []string{"/ui/assets/app.js", "/ui/assets/style.css", "/ui/assets/favicon.svg"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		code, hd, body := call(t, http.MethodGet, srv.URL+p, "", "")
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", p, code)
			continue
		}
		switch {
		case strings.HasSuffix(p, ".js") && hd.Get("Content-Type") != "text/javascript; charset=utf-8",
			strings.HasSuffix(p, ".css") && hd.Get("Content-Type") != "text/css; charset=utf-8":
			t.Errorf("GET %s: Content-Type %q", p, hd.Get("Content-Type"))
		}
		for _, ref := range hostRef.FindAllString(body, -1) {
			if ref != "http://www.w3.org" && ref != "//www.w3.org" {
				t.Errorf("%s refers to another host: %s", p, ref)
			}
		}
		for _, m := range imports.FindAllStringSubmatch(body, -1) {
			rel := m[1] + m[2]
			u, err := url.Parse(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			queue = append(queue, u.ResolveReference(&url.URL{Path: rel}).Path)
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d files reached from app.js: %v", len(seen), seen)
	}

	// Revalidation: an unchanged file costs a 304.
	_, hd, _ := call(t, http.MethodGet, srv.URL+"/ui/assets/app.js", "", "")
	if hd.Get("Cache-Control") != "no-cache" || hd.Get("ETag") == "" {
		t.Errorf("app.js: Cache-Control %q, ETag %q", hd.Get("Cache-Control"), hd.Get("ETag"))
	}
	if code, _, _ := call(t, http.MethodGet, srv.URL+"/ui/assets/app.js", "", "", "If-None-Match", hd.Get("ETag")); code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", code)
	}

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/ui/assets/missing.js", http.StatusNotFound},
		{http.MethodGet, "/ui/assets/../index.html", http.StatusNotFound},
		{http.MethodPost, "/ui/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/ui/assets/app.js", http.StatusMethodNotAllowed},
	} {
		code, hd, body := call(t, c.method, srv.URL+c.path, "", "")
		if code != c.status || hd.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %s %s, want %d problem", c.method, c.path, code, hd.Get("Content-Type"), body, c.status)
		}
		if c.status == http.StatusMethodNotAllowed && hd.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", c.method, c.path, hd.Get("Allow"))
		}
	}
	if code, _, body := call(t, http.MethodHead, srv.URL+"/ui/", "", ""); code != http.StatusOK || body != "" {
		t.Errorf("HEAD /ui/: %d %q", code, body)
	}
}

// TestUIWithAuth: with auth on, the console's files need no token (they
// hold no data) while the API it calls does.
func TestUIWithAuth(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = jwtSecret })
	for _, p := range []string{"/ui/", "/ui/streams/a%2Fb", "/ui/assets/app.js"} {
		if code, _, _ := call(t, http.MethodGet, srv.URL+p, "", ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", p, code)
		}
	}
	for _, p := range []string{"/stats", "/streams", "/streams/a%2Fb", "/uix"} {
		if code, hd, _ := call(t, http.MethodGet, srv.URL+p, "", ""); code != http.StatusUnauthorized || hd.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s without a token: %d, want 401 with a challenge", p, code)
		}
	}
}

type streamInfo struct {
	Name       string    `json:"name"`
	Events     int64     `json:"events"`
	LastNumber int64     `json:"last_number"`
	CreatedAt  time.Time `json:"created_at"`
	LastWrite  time.Time `json:"last_write"`
}

func listStreams(t *testing.T, u, token string) ([]streamInfo, string) {
	t.Helper()
	code, hd, body := call(t, http.MethodGet, u, token, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	var out struct {
		Streams []streamInfo `json:"streams"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, body)
	}
	return out.Streams, hd.Get("Link")
}

func names(ss []streamInfo) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return strings.Join(out, ",")
}

// TestStreamsEndpoint: GET /streams lists by prefix (LIKE's wildcards are
// literal), pages with Link, leaves out streams outside the read grant;
// GET /streams/{stream} gives one stream's counts.
func TestStreamsEndpoint(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = jwtSecret })
	admin := token(t, jwt.MapClaims{"sub": "admin"})
	var last int64
	for i, s := range []string{"a/1", "a/2", "a/2", "a_%", "ab", "b/1", "a/3"} {
		_, hd, body := call(t, http.MethodPost, srv.URL+"/collect", admin, `{}`,
			"Fossil-Stream", s, "Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "id-"+string(rune('a'+i)), "ce-source", "/t", "ce-type", "t")
		if hd.Get("Fossil-Event-Number") == "" {
			t.Fatalf("post: %s", body)
		}
		last++
	}

	all, link := listStreams(t, srv.URL+"/streams", admin)
	if names(all) != "a/1,a/2,a/3,a_%,ab,b/1" || link != "" {
		t.Fatalf("every stream: %s (Link %q)", names(all), link)
	}
	a2 := all[1]
	if a2.Events != 2 || a2.LastNumber != 3 || a2.LastWrite.Before(a2.CreatedAt) || time.Since(a2.LastWrite) > time.Minute {
		t.Errorf("a/2: %+v", a2)
	}
	if got, _ := listStreams(t, srv.URL+"/streams?prefix=a_", admin); names(got) != "a_%" {
		t.Errorf("prefix a_: %s", names(got))
	}
	if got, _ := listStreams(t, srv.URL+"/streams?prefix="+url.QueryEscape("a/"), admin); names(got) != "a/1,a/2,a/3" {
		t.Errorf("prefix a/: %s", names(got))
	}

	// Pages of two, following Link.
	var pages []string
	next := "/streams?prefix=a&limit=2"
	for next != "" {
		got, link := listStreams(t, srv.URL+next, admin)
		pages = append(pages, names(got))
		if link == "" {
			break
		}
		next = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
		if len(pages) > 5 {
			t.Fatalf("pages never end: %v", pages)
		}
	}
	if strings.Join(pages, " | ") != "a/1,a/2 | a/3,a_% | ab" {
		t.Errorf("pages: %q", pages)
	}

	// A reader of a/{n} sees only those.
	reader := token(t, jwt.MapClaims{"sub": "r", "fossil": map[string]any{"read": []string{"a/{n}"}}})
	if got, _ := listStreams(t, srv.URL+"/streams", reader); names(got) != "a/1,a/2,a/3" {
		t.Errorf("a reader of a/{n} lists %s", names(got))
	}
	if code, _, _ := call(t, http.MethodGet, srv.URL+"/streams/b%2F1", reader, ""); code != http.StatusForbidden {
		t.Errorf("GET /streams/b%%2F1 outside the grant: %d, want 403", code)
	}

	code, _, body := call(t, http.MethodGet, srv.URL+"/streams/a%2F2", reader, "")
	var one streamInfo
	if code != http.StatusOK || json.Unmarshal([]byte(body), &one) != nil || one.Name != "a/2" || one.Events != 2 || one.LastNumber != 3 {
		t.Errorf("GET /streams/a%%2F2: %d %s", code, body)
	}
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/streams/a%2F9", http.StatusNotFound},
		{"/streams/%2Fa", http.StatusBadRequest},
		{"/streams?prefix=" + strings.Repeat("x", 256), http.StatusBadRequest},
		{"/streams?limit=1001", http.StatusBadRequest},
		{"/streams?sort=name", http.StatusBadRequest},
	} {
		code, hd, body := call(t, http.MethodGet, srv.URL+c.path, admin, "")
		if code != c.status || hd.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %.60s: %d %s, want %d", c.path, code, body, c.status)
		}
	}
}

// TestStatsEndpoint: GET /stats counts events and streams and samples the
// head; it needs the grant of /metrics.
func TestStatsEndpoint(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = jwtSecret })
	admin := token(t, jwt.MapClaims{"sub": "admin"})
	for i, s := range []string{"a/1", "a/2", "a/2"} {
		call(t, http.MethodPost, srv.URL+"/collect", admin, `{}`,
			"Fossil-Stream", s, "Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", string(rune('a'+i)), "ce-source", "/t", "ce-type", "t")
	}
	var st struct {
		Events          int64   `json:"events"`
		Streams         int64   `json:"streams"`
		IntervalSeconds float64 `json:"interval_seconds"`
		Samples         []struct {
			At     time.Time `json:"at"`
			Events int64     `json:"events"`
		} `json:"samples"`
	}
	testserver.Eventually(t, 10*time.Second, "stats to see 3 events", func() bool {
		code, _, body := call(t, http.MethodGet, srv.URL+"/stats", admin, "")
		return code == http.StatusOK && json.Unmarshal([]byte(body), &st) == nil && st.Events == 3
	})
	if st.Streams != 2 || st.IntervalSeconds != 5 || len(st.Samples) < 2 {
		t.Fatalf("stats: %+v", st)
	}
	lastSample := st.Samples[len(st.Samples)-1]
	if lastSample.Events != 3 || time.Since(lastSample.At) > time.Minute || st.Samples[0].Events > 3 || st.Samples[0].At.After(lastSample.At) {
		t.Errorf("samples: %+v", st.Samples)
	}
	// Consumers' lag at each sample, by name, within the consume grant.
	for _, c := range []struct{ name, offset string }{{"billing", "1"}, {"audit", "3"}} {
		if code, _, body := call(t, http.MethodPut, srv.URL+"/consumer/"+c.name+"/commit", admin, "", "Last-Event-Id", c.offset); code != http.StatusNoContent {
			t.Fatalf("commit %s: %d %s", c.name, code, body)
		}
	}
	type lagSample struct {
		At  time.Time `json:"at"`
		Lag int64     `json:"lag"`
	}
	var cs struct {
		IntervalSeconds float64 `json:"interval_seconds"`
		Consumers       []struct {
			Name    string      `json:"name"`
			Samples []lagSample `json:"samples"`
		} `json:"consumers"`
	}
	testserver.Eventually(t, 15*time.Second, "a sample with both consumers", func() bool {
		code, _, body := call(t, http.MethodGet, srv.URL+"/stats/consumers", admin, "")
		return code == http.StatusOK && json.Unmarshal([]byte(body), &cs) == nil && len(cs.Consumers) == 2
	})
	if cs.Consumers[0].Name != "audit" || cs.Consumers[1].Name != "billing" || cs.IntervalSeconds != 5 {
		t.Fatalf("consumer stats: %+v", cs)
	}
	if s := cs.Consumers[1].Samples; s[len(s)-1].Lag != 2 || cs.Consumers[0].Samples[len(cs.Consumers[0].Samples)-1].Lag != 0 {
		t.Errorf("lags: billing %+v, audit %+v; want 2 and 0", s, cs.Consumers[0].Samples)
	}
	onlyBilling := token(t, jwt.MapClaims{"sub": "b", "fossil": map[string]any{"consume": []string{"billing"}}})
	code, _, body := call(t, http.MethodGet, srv.URL+"/stats/consumers", onlyBilling, "")
	if code != http.StatusOK || !strings.Contains(body, `"billing"`) || strings.Contains(body, "audit") {
		t.Errorf("stats/consumers for a billing-only token: %d %s", code, body)
	}

	metrics := token(t, jwt.MapClaims{"sub": "m", "fossil": map[string]any{"metrics": true}})
	reader := token(t, jwt.MapClaims{"sub": "r", "fossil": map[string]any{"read": []string{"{+all}"}}})
	if code, _, body := call(t, http.MethodGet, srv.URL+"/stats", metrics, ""); code != http.StatusOK {
		t.Errorf("stats with the metrics grant: %d %s", code, body)
	}
	if code, hd, _ := call(t, http.MethodGet, srv.URL+"/stats", reader, ""); code != http.StatusForbidden || hd.Get("Content-Type") != "application/problem+json" {
		t.Errorf("stats with a read grant only: %d, want 403", code)
	}
}
