package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// call sends one request to the server and returns status and body.
func call(t *testing.T, method, u, token, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// store is what seed wrote.
type seeded struct {
	jsonEvent   int64 // orders/1, data {"total": 12, "items": […]}
	binaryEvent int64 // files/1, bytes 00 01 02 ff
	last        int64
	sub         string // a subscription whose sink refuses everything
}

// seed writes events of several kinds, a consumer offset, a schema and a
// subscription with parked events.
func seed(t *testing.T, srv *testserver.Server) seeded {
	t.Helper()
	var s seeded
	// Bursts of readings, so that the ingest chart has a shape.
	for round, n := range []int{3, 6, 10, 14, 9, 5, 8, 12, 7, 4} {
		for i := range n {
			srv.MustPost(t, fmt.Sprintf("sensors/%d", i%3+1), testserver.Event{ID: fmt.Sprintf("r-%d-%d", round, i), Type: "reading", Data: fmt.Sprintf(`{"celsius":%d}`, 18+i)})
		}
		time.Sleep(statsInterval)
	}
	s.jsonEvent = srv.MustPost(t, "orders/1", testserver.Event{ID: "o-1", Type: "order.placed", Data: `{"total":12,"items":["pen","ink"]}`})
	srv.MustPost(t, "orders/1", testserver.Event{ID: "o-2", Type: "order.paid", Data: `{"total":12}`})
	srv.MustPost(t, "orders/2", testserver.Event{ID: "o-3", Type: "order.placed", Data: `{"total":5}`})
	srv.MustPost(t, "visits/1", testserver.Event{ID: "v-1", Type: "visit", Data: `hello`}, "Content-Type", "text/plain")
	s.binaryEvent = srv.MustPost(t, "files/1", testserver.Event{ID: "f-1", Type: "file.stored", Data: "\x00\x01\x02\xff"}, "Content-Type", "application/octet-stream", "ce-traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	for i := 3; i <= 7; i++ {
		s.last = srv.MustPost(t, "orders/"+strconv.Itoa(i), testserver.Event{ID: fmt.Sprintf("o-%d", i+1), Type: "order.placed", Data: fmt.Sprintf(`{"total":%d}`, i)})
	}
	if code, _, body := call(t, http.MethodPut, srv.URL+"/consumer/billing/commit", "", "", "Last-Event-Id", "3"); code != http.StatusNoContent {
		t.Fatalf("commit: %d %s", code, body)
	}
	if code, _, body := call(t, http.MethodPut, srv.URL+"/schemas/order.placed", "", `{"type":"object","required":["total"]}`, "Content-Type", "application/json"); code != http.StatusCreated {
		t.Fatalf("schema: %d %s", code, body)
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "this sink refuses everything", http.StatusBadRequest)
	}))
	t.Cleanup(sink.Close)
	code, hd, body := call(t, http.MethodPost, srv.URL+"/subscriptions", "",
		`{"protocol":"HTTP","sink":"`+sink.URL+`","config":{"streams":"orders/{id}","startafter":"0","handshake":"off"}}`, "Content-Type", "application/json")
	if code != http.StatusCreated {
		t.Fatalf("subscription: %d %s", code, body)
	}
	s.sub = strings.TrimPrefix(hd.Get("Location"), "/subscriptions/")
	testserver.Eventually(t, 30*time.Second, "the subscription's events parked", func() bool {
		_, _, body := call(t, http.MethodGet, srv.URL+"/subscriptions/"+s.sub, "", "")
		var sub struct {
			Status struct{ Parked int } `json:"status"`
		}
		return json.Unmarshal([]byte(body), &sub) == nil && sub.Status.Parked == 8
	})
	return s
}

// statsInterval is the sampling period of the page tests' servers.
const statsInterval = 250 * time.Millisecond

// TestConsolePages opens every page of the console on a server holding
// real data and checks what each shows; it saves a screenshot of each.
func TestConsolePages(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.StatsInterval = statsInterval })
	data := seed(t, srv)
	tb := newTab(t, srv.URL)

	t.Run("Overview", func(t *testing.T) {
		tb.t = t
		tb.open("/ui/")
		tb.waitText("#stat-events", strconv.FormatInt(data.last, 10))
		tb.waitText("#stat-streams", "12")
		tb.waitText("#stat-checkpoint", strconv.FormatInt(data.last, 10))
		tb.waitText("#stat-rate", "/s")
		tb.waitText("main", "Newest events", "orders/7", "Recently written streams", "files/1", "Root hash")
		if n := eval[int](tb, `document.querySelectorAll("svg.chart").length`); n != 1 {
			t.Errorf("%d ingest charts, want 1", n)
		}
		if got := eval[string](tb, `document.title`); got != "Overview · Fossil" {
			t.Errorf("title %q", got)
		}
		tb.screenshot("overview")
		tb.checkAccessible("overview")
		// Down to a small laptop screen nothing scrolls sideways.
		tb.do("narrow", chromedp.EmulateViewport(1024, 700))
		if w := eval[int](tb, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
			t.Errorf("at 1024 px the page is %d px too wide", w)
		}
		tb.screenshot("overview-1024")
		tb.do("wide", chromedp.EmulateViewport(1280, 800))
		tb.colorScheme("dark")
		tb.screenshot("overview-dark")
		tb.checkAccessible("overview-dark")
		tb.colorScheme("light")
		// The first Tab reaches the skip link.
		tb.do("tab", chromedp.KeyEvent("\t"))
		if got := eval[string](tb, `document.activeElement.className + " " + document.activeElement.getAttribute("href")`); got != "skip #main" {
			t.Errorf("the first Tab focuses %q, want the skip link", got)
		}
	})

	t.Run("Streams", func(t *testing.T) {
		tb.t = t
		tb.open("/ui/streams")
		tb.waitText("main", "orders/1", "visits/1", "files/1")
		tb.do("search by prefix",
			chromedp.SetValue(chromedp.CSS("#stream-prefix"), "orders/"),
			chromedp.Click(chromedp.CSS("form[role=search] button")))
		tb.waitJS(`location.search === "?prefix=orders%2F" && !document.querySelector("main").innerText.includes("visits/1")`)
		if s := tb.text("main"); strings.Contains(s, "visits/1") || !strings.Contains(s, "orders/1") {
			t.Errorf("prefix orders/ shows:\n%s", s)
		}
		// orders/1 has 2 events, its last right after the first order.
		row := eval[[]string](tb, `[...[...document.querySelectorAll("tbody tr")].find(r => r.cells[0].innerText === "orders/1").cells].map(c => c.innerText)`)
		if len(row) != 4 || row[1] != "2" || !strings.HasSuffix(row[2], " ago") || row[3] != fmt.Sprintf("#%d", data.jsonEvent+1) {
			t.Errorf("orders/1 row: %q", row)
		}
		tb.screenshot("streams")
		tb.checkAccessible("streams")
	})

	t.Run("Stream", func(t *testing.T) {
		tb.t = t
		// A deep link: the stream name path-escaped in one segment.
		tb.open("/ui/streams/" + url.PathEscape("orders/1"))
		tb.waitText("main", "Events 1–2 of 2", "order.paid", "order.placed")
		rows := eval[[]string](tb, `[...document.querySelectorAll("tbody tr")].map(r => r.cells[0].innerText)`)
		if strings.Join(rows, ",") != "2,1" {
			t.Errorf("newest first: sequences %v, want 2,1", rows)
		}
		tb.do("from the start", chromedp.Click(chromedp.Search(`//a[text()="From the start"]`)))
		tb.waitJS(`location.search === "?order=oldest" && document.querySelector("span[aria-current]").innerText === "From the start"`)
		rows = eval[[]string](tb, `[...document.querySelectorAll("tbody tr")].map(r => r.cells[0].innerText)`)
		if strings.Join(rows, ",") != "1,2" {
			t.Errorf("from the start: sequences %v, want 1,2", rows)
		}
		tb.screenshot("stream")
		tb.checkAccessible("stream")

		// A name with a space, a percent sign and a non-ASCII letter: the
		// list links to it and its deep link reloads.
		odd := "café/one two%"
		data.last = srv.MustPost(t, odd, testserver.Event{ID: "odd", Type: "odd"})
		tb.open("/ui/streams?prefix=" + url.QueryEscape("café/"))
		tb.do("open "+odd, chromedp.Click(chromedp.CSS("tbody a")))
		tb.waitText("#stream-title", odd)
		tb.waitText("main", "Events 1–1 of 1")
		path := eval[string](tb, `location.pathname`)
		if path != "/ui/streams/"+url.PathEscape(odd) {
			t.Errorf("the stream's page is at %s", path)
		}
		tb.open(path)
		tb.waitText("#stream-title", odd)

		tb.open("/ui/streams/" + url.PathEscape("no/such"))
		tb.waitText("main", "404", "not found")
		tb.open("/ui/nowhere")
		tb.waitText("main", "Not found")
	})

	t.Run("Event", func(t *testing.T) {
		tb.t = t
		tb.open(fmt.Sprintf("/ui/events/%d", data.jsonEvent))
		tb.waitText("#event-data", `"total": 12`, `"pen"`)
		tb.waitText("#event-attributes", "order.placed", "o-1", "/test")
		tb.waitText("#event-proof", "Leaf index", "Tree size")
		tb.waitText("main", "Next in orders/1", "Next in the log")
		tb.screenshot("event")
		tb.checkAccessible("event")
		tb.do("next in the stream", chromedp.Click(chromedp.Search(`//a[contains(text(), "Next in orders/1")]`)))
		tb.waitText("#event-attributes", "order.paid")
		if got := eval[string](tb, `location.pathname`); got != fmt.Sprintf("/ui/events/%d", data.jsonEvent+1) {
			t.Errorf("after next in the stream: %s", got)
		}

		tb.open(fmt.Sprintf("/ui/events/%d", data.last))
		tb.waitText("main", "the newest event")
		if s := tb.text("main"); strings.Contains(s, "Next in the log") {
			t.Errorf("the newest event links to a next one:\n%s", s)
		}

		tb.open(fmt.Sprintf("/ui/events/%d", data.binaryEvent))
		tb.waitText("#event-data", "00 01 02 ff")
		tb.waitText("#event-extensions", "traceparent")
		tb.screenshot("event-binary")
		tb.checkAccessible("event-binary")
	})

	t.Run("Consumers", func(t *testing.T) {
		tb.t = t
		tb.open("/ui/consumers")
		tb.waitText("#consumers", "billing", "not connected", strconv.FormatInt(data.last-3, 10))
		// The lag history comes from the server's samples (every 250 ms
		// here), the first taken when billing had committed 3.
		tb.waitJS(`/from \d+ to \d+/.test(document.querySelector("#consumers svg[role=img]").getAttribute("aria-label"))`)
		// A refresh (every 2 s) keeps the keyboard focus where it was.
		eval[bool](tb, `(() => { const a = document.querySelector("#consumers a"); a.focus(); window.focusedBefore = a; return true; })()`)
		tb.waitJS(`!document.contains(window.focusedBefore)`)
		if got := eval[string](tb, `document.activeElement.getAttribute("href")`); got != "/ui/events/3" {
			t.Errorf("after a refresh the focus is on %q, want the offset's link /ui/events/3", got)
		}
		tb.screenshot("consumers")
		tb.checkAccessible("consumers")
	})

	t.Run("Subscriptions", func(t *testing.T) {
		tb.t = t
		tb.open("/ui/subscriptions")
		tb.waitText("#subscriptions", data.sub, "orders/{id}", "HTTP 400")
		tb.do("open the subscription", chromedp.Click(chromedp.CSS("#subscriptions a")))
		tb.waitText("#sub-parked", "8")
		tb.waitText("main", "Parked events", fmt.Sprintf("#%d", data.jsonEvent), "HTTP 400")
		tb.screenshot("subscription")
		tb.checkAccessible("subscription")
		tb.do("replay", chromedp.Click(chromedp.CSS("#replay")))
		tb.waitText("#sub-message", "Replay requested")
	})

	t.Run("Schemas", func(t *testing.T) {
		tb.t = t
		tb.open("/ui/schemas")
		tb.waitText("#schema-list", "order.placed")
		tb.screenshot("schemas")
		tb.checkAccessible("schemas")
		tb.do("open the schema", chromedp.Click(chromedp.CSS("#schema-list a")))
		tb.waitText("#schema-title", "order.placed")
		if v := eval[string](tb, `document.querySelector("#schema-doc").value`); !strings.Contains(v, `"required": [`) {
			t.Errorf("schema editor holds %q", v)
		}
		tb.screenshot("schema")
		tb.checkAccessible("schema")
	})
}

// TestConsoleTail: the live tail shows an event written after the page
// opened, pauses and resumes without losing one, and filters.
func TestConsoleTail(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	srv.MustPost(t, "orders/1", testserver.Event{ID: "before", Type: "order.placed"})
	tb := newTab(t, srv.URL)
	tb.open("/ui/tail?stream=" + url.QueryEscape("orders/{id}"))
	tb.waitText("#tail-status", "Live", "1 received")
	n := srv.MustPost(t, "orders/2", testserver.Event{ID: "after-open", Type: "order.shipped"})
	srv.MustPost(t, "visits/1", testserver.Event{ID: "not-matching", Type: "visit"})
	tb.waitText("#tail-list", "after-open", "order.shipped", "#"+strconv.FormatInt(n, 10))
	tb.waitText("#tail-status", "2 received")
	tb.screenshot("tail")

	tb.do("pause", chromedp.Click(chromedp.CSS("#tail-pause")))
	tb.waitText("#tail-status", "Paused")
	srv.MustPost(t, "orders/3", testserver.Event{ID: "while-paused", Type: "order.placed"})
	tb.do("resume", chromedp.Click(chromedp.CSS("#tail-pause")))
	tb.waitText("#tail-list", "while-paused")
	tb.waitText("#tail-status", "Live", "3 received")

	tb.do("filter", chromedp.SendKeys(chromedp.CSS("#tail-filter"), "shipped"))
	tb.waitText("#tail-status", "3 received · 1 shown")
	if s := tb.text("main"); strings.Contains(s, "not-matching") {
		t.Errorf("the tail of orders/{id} shows visits/1:\n%s", s)
	}
}

// TestConsoleSchemaError: saving an invalid schema shows the server's
// error next to the editor, and JSON that does not parse is caught before
// it is sent.
func TestConsoleSchemaError(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	if code, _, body := call(t, http.MethodPut, srv.URL+"/schemas/order.placed", "", `{"type":"object"}`, "Content-Type", "application/json"); code != http.StatusCreated {
		t.Fatalf("schema: %d %s", code, body)
	}
	tb := newTab(t, srv.URL)
	tb.open("/ui/schemas/order.placed")
	tb.waitText("#schema-title", "order.placed")
	tb.do("save an invalid schema",
		chromedp.SetValue(chromedp.CSS("#schema-doc"), `{"type": 12}`),
		chromedp.Click(chromedp.CSS("#schema-save")))
	tb.waitText("#schema-errors", "400", "not a valid JSON Schema")
	if v := eval[string](tb, `document.querySelector("#schema-doc").getAttribute("aria-invalid")`); v != "true" {
		t.Errorf("aria-invalid %q after a refused save", v)
	}
	tb.screenshot("schema-error")
	if _, _, body := call(t, http.MethodGet, srv.URL+"/schemas/order.placed", "", ""); body != `{"type":"object"}` {
		t.Errorf("the stored schema changed: %s", body)
	}
	tb.do("save broken JSON",
		chromedp.SetValue(chromedp.CSS("#schema-doc"), `{"type": `),
		chromedp.Click(chromedp.CSS("#schema-save")))
	tb.waitText("#schema-errors", "not JSON")
	tb.do("save a valid schema",
		chromedp.SetValue(chromedp.CSS("#schema-doc"), `{"type":"object","required":["total"]}`),
		chromedp.Click(chromedp.CSS("#schema-save")))
	tb.waitText("#schema-errors", "Saved")
	if _, _, body := call(t, http.MethodGet, srv.URL+"/schemas/order.placed", "", ""); !strings.Contains(body, `"required"`) {
		t.Errorf("the schema was not saved: %s", body)
	}

	// A new schema from the list page, then its page.
	tb.open("/ui/schemas")
	tb.do("create a schema",
		chromedp.SetValue(chromedp.CSS("#schema-type"), "order/shipped"),
		chromedp.SetValue(chromedp.CSS("#schema-doc"), `{"type":"object"}`),
		chromedp.Click(chromedp.CSS("#schema-save")))
	tb.waitJS(`location.pathname === "/ui/schemas/order%2Fshipped"`)
	tb.waitText("#schema-title", "order/shipped")
	if code, _, body := call(t, http.MethodGet, srv.URL+"/schemas/order%2Fshipped", "", ""); code != http.StatusOK || body != `{"type":"object"}` {
		t.Errorf("the new schema: %d %s", code, body)
	}
}

const jwtSecret = "console-test-secret-of-at-least-32-bytes"

func token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConsoleJWT: with auth on, the console's files load without a token,
// a page asks for one, a token inside its grant shows data, and a token
// outside the grant is refused with the server's 403.
func TestConsoleJWT(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = jwtSecret })
	admin := token(t, jwt.MapClaims{"sub": "admin"})
	post := func(stream, id string) int64 {
		t.Helper()
		_, hd, body := call(t, http.MethodPost, srv.URL+"/collect", admin, `{}`,
			"Fossil-Stream", stream, "Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", id, "ce-source", "/t", "ce-type", "t")
		n, err := strconv.ParseInt(hd.Get("Fossil-Event-Number"), 10, 64)
		if err != nil {
			t.Fatalf("post: %s", body)
		}
		return n
	}
	post("orders/1", "o-1")
	secret := post("payroll/1", "p-1")
	reader := token(t, jwt.MapClaims{"sub": "reader", "fossil": map[string]any{"read": []string{"orders/{id}"}}})

	tb := newTab(t, srv.URL)
	tb.open("/ui/streams")
	tb.waitText("main", "A token is needed", "Bearer token")
	if focused := eval[string](tb, `document.activeElement.id`); focused != "token-input" {
		t.Errorf("focus on %q, want the token field", focused)
	}
	tb.screenshot("token")
	tb.do("enter a token",
		chromedp.SetValue(chromedp.CSS("#token-input"), reader),
		chromedp.Click(chromedp.CSS(".token-form button[type=submit]")))
	tb.waitText("main", "orders/1")
	if s := tb.text("main"); strings.Contains(s, "payroll") {
		t.Errorf("a reader of orders/{id} sees payroll:\n%s", s)
	}
	if got := eval[string](tb, `sessionStorage.getItem("fossil.token")`); got != reader {
		t.Errorf("session storage holds %q", got)
	}
	if got := eval[string](tb, `localStorage.length + document.cookie`); got != "0" {
		t.Errorf("the token went beyond session storage: %q", got)
	}

	// Outside the grant: an event of payroll/1, the schemas (admin).
	tb.open(fmt.Sprintf("/ui/events/%d", secret))
	tb.waitText("main", "403", "does not grant read access")
	if s := tb.text("main"); strings.Contains(s, "payroll") {
		t.Errorf("the refusal names the stream:\n%s", s)
	}
	tb.screenshot("forbidden")
	tb.open("/ui/schemas")
	tb.waitText("main", "403", "admin")
	// The overview shows what the grant allows: no counts without the
	// metrics grant, the events it may read.
	tb.open("/ui/")
	tb.waitText("main", "needs the metrics grant", "orders/1")

	// The live tail under the grant: the token travels in the header of
	// the SSE request, and only granted streams arrive.
	tb.open("/ui/tail?after=0&stream=" + url.QueryEscape("{+all}"))
	tb.waitText("#tail-status", "Live", "1 received")
	post("payroll/2", "p-2")
	post("orders/2", "o-2")
	tb.waitText("#tail-list", "orders/2")
	tb.waitText("#tail-status", "2 received")
	if s := tb.text("#tail-list"); strings.Contains(s, "payroll") {
		t.Errorf("the tail shows a stream outside the grant:\n%s", s)
	}

	// A bad token: asked again.
	tb.do("forget the token", chromedp.Click(chromedp.CSS("#token-button")))
	tb.waitText("main", "A token is needed")
	tb.do("enter a bad token",
		chromedp.SetValue(chromedp.CSS("#token-input"), "not-a-jwt"),
		chromedp.Click(chromedp.CSS(".token-form button[type=submit]")))
	tb.waitText("main", "refused the token")
}
