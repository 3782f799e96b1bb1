package subscription_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/testserver"
)

const authSecret = "subscription-test-secret"

func bearer(t *testing.T, fossilClaim map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	if fossilClaim != nil {
		claims["fossil"] = fossilClaim
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(authSecret))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + s
}

// TestSubscriptionAuth: managing needs admin; reading needs admin or the
// id in consume; pulling, acking and nacking need the id in consume.
func TestSubscriptionAuth(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast, func(c *cmd.Config) { c.JWTSecret = authSecret })
	admin := bearer(t, map[string]any{"admin": true})
	reader := bearer(t, map[string]any{"read": []string{"{+all}"}, "write": []string{"{+all}"}})
	body := map[string]any{"protocol": "SSE"}
	if code, _, _ := call(t, http.MethodPost, srv.URL+"/subscriptions", body, "Authorization", reader); code != http.StatusForbidden {
		t.Fatalf("create without admin: %d", code)
	}
	if code, _, _ := call(t, http.MethodPost, srv.URL+"/subscriptions", body); code != http.StatusUnauthorized {
		t.Fatalf("create without a token: %d", code)
	}
	code, hdr, out := call(t, http.MethodPost, srv.URL+"/subscriptions", body, "Authorization", admin)
	if code != http.StatusCreated {
		t.Fatalf("create as admin: %d %s", code, out)
	}
	id := strings.TrimPrefix(hdr.Get("Location"), "/subscriptions/")
	consumer := bearer(t, map[string]any{"consume": []string{id}})
	other := bearer(t, map[string]any{"consume": []string{"someone-else"}})
	cases := []struct {
		method, path, tok string
		body              any
		want              int
	}{
		{http.MethodGet, "/subscriptions/" + id, consumer, nil, http.StatusOK},
		{http.MethodGet, "/subscriptions/" + id, other, nil, http.StatusForbidden},
		{http.MethodGet, "/subscriptions/" + id + "/parked", consumer, nil, http.StatusOK},
		{http.MethodPut, "/subscriptions/" + id, consumer, body, http.StatusForbidden},
		{http.MethodDelete, "/subscriptions/" + id, consumer, nil, http.StatusForbidden},
		{http.MethodPost, "/subscriptions/" + id + "/parked/replay", consumer, nil, http.StatusForbidden},
		{http.MethodDelete, "/subscriptions/" + id + "/parked/1", consumer, nil, http.StatusForbidden},
		{http.MethodPost, "/subscriptions/" + id + "/ack", other, map[string]any{"numbers": []int{1}}, http.StatusForbidden},
		{http.MethodPost, "/subscriptions/" + id + "/ack", admin, map[string]any{"numbers": []int{1}}, http.StatusForbidden},
		{http.MethodPost, "/subscriptions/" + id + "/ack", consumer, map[string]any{"numbers": []int{1}}, http.StatusConflict},
		{http.MethodPost, "/subscriptions/" + id + "/nack", consumer, map[string]any{"numbers": []int{1}}, http.StatusConflict},
		{http.MethodGet, "/subscriptions/" + id + "/sse", other, nil, http.StatusForbidden},
		{http.MethodPost, "/subscriptions/" + id + "/parked/replay", admin, nil, http.StatusAccepted},
	}
	for _, tc := range cases {
		code, _, out := call(t, tc.method, srv.URL+tc.path, tc.body, "Authorization", tc.tok)
		if code != tc.want {
			t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, code, tc.want, out)
		}
	}
	// The list shows only what the token may read.
	if _, _, out := call(t, http.MethodGet, srv.URL+"/subscriptions", nil, "Authorization", other); string(out) != "[]\n" {
		t.Errorf("list for another consumer: %s", out)
	}
	if _, _, out := call(t, http.MethodGet, srv.URL+"/subscriptions", nil, "Authorization", consumer); !strings.Contains(string(out), id) {
		t.Errorf("list for the consumer: %s", out)
	}
}
