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
