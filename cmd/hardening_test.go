package cmd_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

// rawRequest opens a connection to srv and writes head (the request line
// and headers, without the blank line) and the first part of a body.
func rawRequest(t *testing.T, srv *testserver.Server, head, body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, strings.ReplaceAll(head, "\n", "\r\n")+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readResponse reads one response from conn, failing after d.
func readResponse(t *testing.T, conn net.Conn, d time.Duration) (*http.Response, string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestBodyLimits: a Content-Length above --max-body is refused before any
// byte of the body is read, and a body that does not arrive within
// --body-timeout is cut off with 408 and the connection closed; a wait for
// an ack that lasts longer than the body timeout is not cut.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.BodyTimeout = 500 * time.Millisecond })
	const ce = "POST /collect HTTP/1.1\nHost: x\nFossil-Stream: s\nce-specversion: 1.0\nce-id: %s\nce-source: /t\nce-type: t\nContent-Type: application/json\n"

	t.Run("ClaimAboveMaxBody", func(t *testing.T) {
		t.Parallel()
		conn := rawRequest(t, srv, fmt.Sprintf(ce, "big")+"Content-Length: 16777216", "{")
		resp, body := readResponse(t, conn, 5*time.Second)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "urn:fossil:problem:too-large") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("SlowBody", func(t *testing.T) {
		t.Parallel()
		conn := rawRequest(t, srv, fmt.Sprintf(ce, "slow")+"Content-Length: 1000", `{"a":`)
		resp, body := readResponse(t, conn, 10*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "urn:fossil:problem:request-timeout") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		// The connection is closed: the rest of the body is never read.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("connection still open (read %d bytes)", n)
		}
	})
	t.Run("SlowChunkedBody", func(t *testing.T) {
		t.Parallel()
		conn := rawRequest(t, srv, fmt.Sprintf(ce, "chunked")+"Transfer-Encoding: chunked", "5\r\n{\"a\":\r\n")
		resp, body := readResponse(t, conn, 10*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("WaitOutlastsBodyTimeout", func(t *testing.T) {
		t.Parallel()
		done := make(chan *http.Response, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/collect", strings.NewReader(`{"n":1}`))
			for k, v := range map[string]string{"Fossil-Stream": "w", "ce-specversion": "1.0", "ce-id": "w1", "ce-source": "/t", "ce-type": "t",
				"Content-Type": "application/json", "Fossil-Wait-Consumer": "billing; timeout=20000"} {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				done <- nil
				return
			}
			resp.Body.Close()
			done <- resp
		}()
		// Ack well after the body timeout has passed.
		time.Sleep(1500 * time.Millisecond)
		for {
			resp, body := do(t, http.MethodPost, srv.URL+"/events/w1/ack", "", `{"consumer_name":"billing"}`)
			if resp.StatusCode == http.StatusNoContent {
				break
			}
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("ack: %d %s", resp.StatusCode, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if resp := <-done; resp == nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("wait-for-ack answered %+v, want 200", resp)
		}
	})
}

// TestGrantsLeakNothing: a narrow token neither learns nor does more than
// its grant allows — the exact requests of the findings that motivated
// each rule.
func TestGrantsLeakNothing(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = e2eSecret })
	full := token(t, e2eSecret, nil, time.Hour)
	narrow := token(t, e2eSecret, map[string]any{
		"write": []string{"orders/{id}"}, "read": []string{"orders/{id}"}, "consume": []string{"billing"},
	}, time.Hour)
	metricsOnly := token(t, e2eSecret, map[string]any{"metrics": true, "consume": []string{"billing"}}, time.Hour)
	admin := token(t, e2eSecret, map[string]any{"admin": true, "consume": []string{"*"}}, time.Hour)

	post := func(tok, stream, id, data string, headers ...string) (*http.Response, string) {
		t.Helper()
		return do(t, http.MethodPost, srv.URL+"/collect", tok, data, append(ceHeaders(id, stream), headers...)...)
	}
	if resp, body := post(full, "secret/1", "s1", `{"n":1}`); resp.StatusCode != 200 {
		t.Fatalf("setup: %d %s", resp.StatusCode, body)
	}
	if resp, body := post(narrow, "orders/1", "o1", `{"n":2}`); resp.StatusCode != 200 {
		t.Fatalf("setup: %d %s", resp.StatusCode, body)
	}

	t.Run("AckOutsideReadGrant", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, srv.URL+"/events/s1/ack", narrow, `{"consumer_name":"billing"}`)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("ack of an event in secret/1 by a token reading orders/{id}: %d %s", resp.StatusCode, body)
		}
		_, unknown := do(t, http.MethodPost, srv.URL+"/events/s2/ack", narrow, `{"consumer_name":"billing"}`)
		if strings.ReplaceAll(body, "s1", "s2") != unknown {
			t.Fatalf("the answer differs from an unknown id's:\n%s\n%s", body, unknown)
		}
		var acks int
		if err := srv.Pool.QueryRow(t.Context(), `SELECT count(*) FROM fossil_acks`).Scan(&acks); err != nil || acks != 0 {
			t.Fatalf("%d acks stored (%v)", acks, err)
		}
		if resp, body := do(t, http.MethodPost, srv.URL+"/events/o1/ack", narrow, `{"consumer_name":"billing"}`); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("ack inside the grant: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("ConflictNamesNoOtherStream", func(t *testing.T) {
		resp, body := post(narrow, "orders/1", "s1", `{"n":"other"}`)
		if resp.StatusCode != http.StatusConflict || strings.Contains(body, "secret") || strings.Contains(body, "event number") {
			t.Fatalf("409 to a token reading orders/{id} about an event in secret/1: %d %s", resp.StatusCode, body)
		}
		resp, body = post(narrow, "orders/1", "s1", `{"n":"other"}`, "Fossil-Replace", "true")
		if resp.StatusCode != http.StatusConflict || strings.Contains(body, "secret") {
			t.Fatalf("replacement 409 about an event in secret/1: %d %s", resp.StatusCode, body)
		}
		// Who may read the stream is told where the stored event is.
		resp, body = post(full, "orders/2", "s1", `{"n":"other"}`)
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `event number 1 in stream \"secret/1\"`) {
			t.Fatalf("409 to a full token: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("ReadRefusalNamesNoStream", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, srv.URL+"/events/1", narrow, "")
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "secret") {
			t.Fatalf("GET /events/1 (in secret/1) with a token reading orders/{id}: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		for _, name := range []string{"billing", "mailer"} {
			if resp, body := do(t, http.MethodPut, srv.URL+"/consumer/"+name+"/commit", full, "", "Last-Event-Id", "1"); resp.StatusCode != 204 {
				t.Fatalf("commit %s: %d %s", name, resp.StatusCode, body)
			}
		}
		resp, body := do(t, http.MethodGet, srv.URL+"/metrics", narrow, "")
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("/metrics with a token without admin or metrics: %d %s", resp.StatusCode, body)
		}
		for _, tt := range []struct {
			name, tok    string
			billing, all bool
		}{
			{"MetricsGrant", metricsOnly, true, false},
			{"Admin", admin, true, true},
			{"FullAccess", full, true, true},
		} {
			resp, body := do(t, http.MethodGet, srv.URL+"/metrics", tt.tok, "")
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "fossil_appends_total") {
				t.Fatalf("%s: /metrics %d", tt.name, resp.StatusCode)
			}
			if got := strings.Contains(body, `fossil_consumer_lag_events{consumer="billing"}`); got != tt.billing {
				t.Errorf("%s: billing lag shown = %v", tt.name, got)
			}
			if got := strings.Contains(body, `consumer="mailer"`); got != tt.all {
				t.Errorf("%s: mailer lag shown = %v", tt.name, got)
			}
		}
	})

	t.Run("IdentifiersBeforeSQL", func(t *testing.T) {
		for _, tt := range []struct {
			path, body string
			status     int
		}{
			{"/events/%ff/ack", `{"consumer_name":"billing"}`, http.StatusBadRequest},
			{"/events/a%00b/ack", `{"consumer_name":"billing"}`, http.StatusBadRequest},
			{"/events/o1/ack", `{"consumer_name":"billing","source":"/e\u0000"}`, http.StatusBadRequest},
			// encoding/json turns invalid UTF-8 into U+FFFD: no such source.
			{"/events/o1/ack", "{\"consumer_name\":\"billing\",\"source\":\"/e\xff\"}", http.StatusNotFound},
		} {
			resp, body := do(t, http.MethodPost, srv.URL+tt.path, full, tt.body)
			if resp.StatusCode != tt.status {
				t.Errorf("POST %s %q: %d %s", tt.path, tt.body, resp.StatusCode, body)
			}
		}
	})
}
