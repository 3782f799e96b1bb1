//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// routes are every route of the server, {v} where a generated value goes.
var routes = []string{
	"/collect", "/consumers", "/consumer/{v}", "/consumer/{v}/commit", "/consumer/{v}/sse?stream={v}",
	"/events", "/events?after={v}&limit={v}", "/events/{v}", "/events/{v}/ack", "/events/{v}/proof?tree_size={v}",
	"/healthz", "/readyz", "/metrics", "/schemas", "/schemas/{v}", "/sse?stream={v}",
	"/streams/{v}/events", "/streams/{v}/events?from={v}&limit={v}",
	"/subscriptions", "/subscriptions/{v}", "/subscriptions/{v}/ack", "/subscriptions/{v}/nack",
	"/subscriptions/{v}/parked", "/subscriptions/{v}/parked/replay", "/subscriptions/{v}/parked/{v}",
	"/subscriptions/{v}/sse", "/checkpoint", "/checkpoint/key", "/tile/{v}/{v}", "/tile/{v}/{v}.p/{v}",
	"/proofs/consistency?from={v}&to={v}", "/{v}",
}

var atoms = []string{
	"%ff", "%00", "%", "%2F", "..", "-1", "0", "1", "18446744073709551616", "1e9", "%7B%2Ball%7D", "{id}",
	"a", "orders%2F1", "%E2%80%AE", "%0A", "%C0%80", "+", " ", "%25", "true", "null", "\u00e9",
}

func value(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(4) {
		b.WriteString(atoms[r.IntN(len(atoms))])
	}
	if r.IntN(20) == 0 {
		b.WriteString(strings.Repeat("x", r.IntN(2000)))
	}
	return b.String()
}

var bodyAtoms = []string{
	"{", "}", "[", "]", `"`, ",", ":", "null", "1e400", "-0", `"\u0000"`, "\xff\xfe", `{"consumer_name":`,
	`"specversion":"1.0"`, `"id":"x"`, `"source":"/s"`, `"type":"t"`, `"data":`, `"data_base64":"!!"`,
	`{"numbers":[`, `"action":"park"`, `"sink":"http://127.0.0.1:1/"`, `"protocol":"HTTP"`, `"filters":[{"sql":"`,
	`"type":"object"`, `"$ref":"#"`,
}

func body(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(30) {
		b.WriteString(bodyAtoms[r.IntN(len(bodyAtoms))])
	}
	return b.String()
}

var headerNames = []string{
	"Fossil-Stream", "Fossil-Expected-Sequence-Number", "Fossil-Replace", "Fossil-Wait-Consumer", "Last-Event-Id",
	"Last-Fossil-Event-Number", "Fossil-Rewind", "Content-Type", "ce-specversion", "ce-id", "ce-source", "ce-type",
	"ce-time", "ce-fossilstream", "Authorization", "X-Request-Id",
}

var contentTypes = []string{"application/cloudevents+json", "application/cloudevents-batch+json", "application/json", "text/plain", "application/cloudevents+json; charset=\xff", ""}

// TestHostileHTTP sends random requests to every route for 60 s (8 at a
// time): random methods, path values, headers and bodies, some raw over
// TCP with broken framing. No answer is a 5xx, every error is a problem
// document, the server never crashes.
func TestHostileHTTP(t *testing.T) {
	srv := startServer(t, pg.createDB(t), "", "FOSSIL_BODY_TIMEOUT=2s")
	// Some state for the requests to meet.
	for i := range 20 {
		_, _ = post(context.Background(), srv.url, fmt.Sprintf("orders/%d", i%3), fmt.Sprintf("e%d", i), []byte(`{"n":1}`))
	}
	const workers = 8
	duration := 60 * time.Second
	var mu sync.Mutex
	statuses := map[int]int{}
	var fails []string
	total, framing := 0, 0
	end := time.Now().Add(duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			hc := &http.Client{}
			for time.Now().Before(end) {
				if r.IntN(25) == 0 {
					rawRequest(r, srv.addr)
					continue
				}
				route := routes[r.IntN(len(routes))]
				for strings.Contains(route, "{v}") {
					route = strings.Replace(route, "{v}", value(r), 1)
				}
				method := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}[r.IntN(7)]
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if strings.Contains(route, "sse") {
					cancel()
					ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
				}
				req, err := http.NewRequestWithContext(ctx, method, srv.url+route, strings.NewReader(body(r)))
				if err != nil {
					cancel()
					continue
				}
				for range r.IntN(6) {
					req.Header.Set(headerNames[r.IntN(len(headerNames))], value(r))
				}
				if r.IntN(2) == 0 {
					req.Header.Set("Content-Type", contentTypes[r.IntN(len(contentTypes))])
				}
				resp, err := hc.Do(req)
				mu.Lock()
				total++
				mu.Unlock()
				if err != nil {
					cancel()
					if !(strings.Contains(route, "sse") && errors.Is(err, context.DeadlineExceeded)) && !strings.Contains(err.Error(), "invalid header") {
						mu.Lock()
						fails = append(fails, method+" "+route+": "+err.Error())
						mu.Unlock()
					}
					continue
				}
				_, _ = io.CopyN(io.Discard, resp.Body, 1<<20)
				resp.Body.Close()
				cancel()
				mu.Lock()
				statuses[resp.StatusCode]++
				if resp.StatusCode == http.StatusBadRequest && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
					// net/http refused the request line itself (a raw space,
					// say) before any handler ran: not Fossil's answer.
					framing++
					mu.Unlock()
					continue
				}
				if resp.StatusCode >= 500 || (resp.StatusCode >= 400 && method != "HEAD" && resp.Header.Get("Content-Type") != "application/problem+json") {
					fails = append(fails, fmt.Sprintf("%s %s: %d %s", method, route, resp.StatusCode, resp.Header.Get("Content-Type")))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if !srv.alive() {
		t.Fatal("the server died")
	}
	if resp, err := http.Get(srv.url + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("not ready after the fuzz: %v %v", resp, err)
	}
	var codes []string
	for c, n := range statuses {
		codes = append(codes, fmt.Sprintf("%d×%d", c, n))
	}
	sort.Strings(codes)
	figure(t, "60 s of random hostile requests on every route (8 at a time): %d requests, statuses %s (of which %d refused by net/http's request-line parser), %d failures, server up", total, strings.Join(codes, " "), framing, len(fails))
	if len(fails) > 0 {
		if len(fails) > 30 {
			fails = fails[:30]
		}
		t.Fatalf("failures:\n%s", strings.Join(fails, "\n"))
	}
}

// rawRequest writes a request with broken framing over TCP and reads what
// comes back.
func rawRequest(r *rand.Rand, addr string) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	variants := []string{
		"POST /collect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"POST /collect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /events HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 2000) + "\r\n",
		"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /events/a/ack HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"POST /collect HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{",
	}
	_, _ = conn.Write([]byte(variants[r.IntN(len(variants))]))
	_, _ = io.Copy(io.Discard, conn)
}
