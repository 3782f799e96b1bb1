package cmd_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

const e2eSecret = "an-e2e-secret-of-at-least-32-bytes!!"

func token(t *testing.T, secret string, fossilClaim map[string]any, exp time.Duration) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "tester", "exp": time.Now().Add(exp).Unix()}
	if fossilClaim != nil {
		claims["fossil"] = fossilClaim
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func do(t *testing.T, method, u, tok string, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func ceHeaders(id string, stream string) []string {
	return []string{"Fossil-Stream", stream, "ce-specversion", "1.0", "ce-id", id, "ce-source", "/e2e", "ce-type", "t", "Content-Type", "application/json"}
}

// TestAuthEndToEnd runs a server with JWT_SECRET and checks every route
// family against full, narrow and missing grants, and that no token ever
// reaches a response body or a log line.
func TestAuthEndToEnd(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{b: new(bytes.Buffer)}
	srv := testserver.StartLogged(t, logs, func(c *cmd.Config) { c.JWTSecret = e2eSecret })

	full := token(t, e2eSecret, nil, time.Hour)
	narrow := token(t, e2eSecret, map[string]any{
		"write": []string{"orders/{id}"}, "read": []string{"orders/{id}"}, "consume": []string{"billing"},
	}, time.Hour)
	admin := token(t, e2eSecret, map[string]any{"admin": true}, time.Hour)
	wrong := token(t, "another-secret-of-at-least-32-bytes!!", nil, time.Hour)
	expired := token(t, e2eSecret, nil, -time.Hour)
	tokens := []string{full, narrow, admin, wrong, expired}

	var bodies []string
	check := func(name string, resp *http.Response, body string, status int, wwwAuth string) {
		t.Helper()
		bodies = append(bodies, body)
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, status, body)
		}
		if wwwAuth != "" && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), wwwAuth) {
			t.Errorf("%s: WWW-Authenticate %q, want prefix %q", name, resp.Header.Get("WWW-Authenticate"), wwwAuth)
		}
		if status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: content type %q", name, resp.Header.Get("Content-Type"))
		}
	}

	resp, body := do(t, http.MethodGet, srv.URL+"/healthz", "", "")
	check("HealthzOpen", resp, body, 200, "")
	resp, body = do(t, http.MethodPost, srv.URL+"/collect", "", `{}`, ceHeaders("a", "orders/1")...)
	check("NoToken", resp, body, 401, "Bearer")
	resp, body = do(t, http.MethodPost, srv.URL+"/collect", wrong, `{}`, ceHeaders("a", "orders/1")...)
	check("WrongSecret", resp, body, 401, `Bearer error="invalid_token"`)
	resp, body = do(t, http.MethodPost, srv.URL+"/collect", expired, `{}`, ceHeaders("a", "orders/1")...)
	check("Expired", resp, body, 401, `Bearer error="invalid_token"`)
	resp, body = do(t, http.MethodGet, srv.URL+"/readyz", "", "")
	check("ReadyzNeedsToken", resp, body, 401, "Bearer")

	resp, body = do(t, http.MethodPost, srv.URL+"/collect", narrow, `{"n":1}`, ceHeaders("o1", "orders/1")...)
	check("NarrowWriteAllowed", resp, body, 200, "")
	resp, body = do(t, http.MethodPost, srv.URL+"/collect", narrow, `{"n":2}`, ceHeaders("u1", "users/1")...)
	check("NarrowWriteRefused", resp, body, 403, `Bearer error="insufficient_scope"`)
	resp, body = do(t, http.MethodPost, srv.URL+"/collect", full, `{"n":3}`, ceHeaders("u2", "users/2")...)
	check("FullWrite", resp, body, 200, "")
	resp, body = do(t, http.MethodPost, srv.URL+"/collect", full, `{"n":4}`, ceHeaders("o2", "orders/2")...)
	check("FullWrite2", resp, body, 200, "")

	// A broad subscription under a narrow grant sees only granted streams.
	sse := srv.OpenSSE(t, "/sse?stream="+url.QueryEscape("{+all}"), "Authorization", "Bearer "+narrow)
	frames := sse.Next(t, 2, 5*time.Second)
	for _, f := range frames {
		if s, _ := f.Event["fossilstream"].(string); !strings.HasPrefix(s, "orders/") {
			t.Errorf("narrow grant received %s", f.Data)
		}
	}
	if frames[0].Number() != 1 || frames[1].Number() != 3 {
		t.Errorf("narrow grant frames %s, %s; want 1, 3", frames[0].ID, frames[1].ID)
	}
	sse.Quiet(t, 300*time.Millisecond)
	// EventSource can only send the token in the query string.
	q := srv.OpenSSE(t, "/sse?stream="+url.QueryEscape("{+all}")+"&access_token="+narrow)
	if got := q.Next(t, 2, 5*time.Second); got[1].Number() != 3 {
		t.Errorf("query token frames: %+v", got)
	}

	resp, body = do(t, http.MethodGet, srv.URL+"/events", narrow, "")
	check("ReadLogFiltered", resp, body, 200, "")
	if strings.Contains(body, "users/") || !strings.Contains(body, "orders/1") {
		t.Errorf("filtered log: %s", body)
	}
	resp, body = do(t, http.MethodGet, srv.URL+"/streams/users%2F2/events", narrow, "")
	check("ReadStreamRefused", resp, body, 403, `Bearer error="insufficient_scope"`)
	resp, body = do(t, http.MethodGet, srv.URL+"/events/2", narrow, "")
	check("ReadEventRefused", resp, body, 403, "")

	resp, body = do(t, http.MethodPut, srv.URL+"/consumer/billing/commit", narrow, "", "Last-Event-Id", "1")
	check("ConsumeAllowed", resp, body, 204, "")
	resp, body = do(t, http.MethodPut, srv.URL+"/consumer/mailer/commit", narrow, "", "Last-Event-Id", "1")
	check("ConsumeRefused", resp, body, 403, `Bearer error="insufficient_scope"`)
	resp, body = do(t, http.MethodPost, srv.URL+"/events/o1/ack", narrow, `{"consumer_name":"mailer"}`)
	check("AckRefused", resp, body, 403, "")

	resp, body = do(t, http.MethodPut, srv.URL+"/schemas/t", narrow, `{"type":"object"}`)
	check("SchemaNeedsAdmin", resp, body, 403, "")
	resp, body = do(t, http.MethodPut, srv.URL+"/schemas/t", admin, `{"type":"object"}`)
	check("SchemaAdmin", resp, body, 201, "")

	if !strings.Contains(logs.String(), "status=403") {
		t.Fatalf("the debug log did not record the refusals, so the leak check below proves nothing:\n%s", logs.String())
	}
	for _, b := range append(bodies, logs.String()) {
		for _, tok := range tokens {
			if strings.Contains(b, tok) {
				t.Fatalf("a token leaked into a response or log: %s", b)
			}
		}
	}
}

// TestSSEClosesWhenTokenExpires: a stream ends at its token's expiry.
func TestSSEClosesWhenTokenExpires(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, func(c *cmd.Config) { c.JWTSecret = e2eSecret })
	// exp has one-second resolution and a leeway applies; expire soon.
	claims := jwt.MapClaims{"exp": time.Now().Add(2 * time.Second).Unix()}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(e2eSecret))
	if err != nil {
		t.Fatal(err)
	}
	sse := srv.OpenSSE(t, "/sse?stream=a", "Authorization", "Bearer "+tok)
	if sse.Err() != nil {
		t.Fatal(sse.Err())
	}
	if !sse.Ended(10 * time.Second) {
		t.Fatal("the stream outlived its token")
	}
}
