package subscription_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/internal/testserver"
)

func TestSubscriptionCRUD(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	wh := newWebhook(t, nil)
	srv.MustPost(t, "orders/1", testserver.Event{ID: "e1"})
	srv.MustPost(t, "orders/1", testserver.Event{ID: "e2"})

	obj := create(t, srv, map[string]any{
		"id":             "ignored",
		"protocol":       "HTTP",
		"sink":           wh.URL,
		"types":          []string{"test.event"},
		"sinkcredential": map[string]any{"credentialtype": "ACCESSTOKEN", "accesstoken": "s3cret"},
		"config":         map[string]string{"streams": "orders/{id}", "maxattempts": "3", "paused": "true"},
	})
	id := obj["id"].(string)
	if id == "ignored" || id == "" {
		t.Fatalf("id %q: the server assigns ids", id)
	}
	if _, ok := obj["sinkcredential"]; ok {
		t.Fatalf("sinkcredential returned: %v", obj)
	}
	st := obj["status"].(map[string]any)
	// Without startafter the subscription starts after the newest event.
	if st["state"] != "active" || st["position"] != 2.0 || st["lag"] != 0.0 || st["delivered"] != 0.0 || st["parked"] != 0.0 || st["lasterror"] != nil {
		t.Fatalf("status %v", st)
	}
	if wh.optionsSent() != 1 {
		t.Fatalf("handshakes: %d, want 1", wh.optionsSent())
	}

	got := get(t, srv, id)
	if got["sink"] != wh.URL || got["protocol"] != "HTTP" {
		t.Fatalf("get: %v", got)
	}
	if _, ok := got["sinkcredential"]; ok {
		t.Fatalf("get returned the credential")
	}
	code, _, out := call(t, http.MethodGet, srv.URL+"/subscriptions", nil)
	var list []map[string]any
	if code != http.StatusOK || json.Unmarshal(out, &list) != nil || len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("list: %d %s", code, out)
	}

	// PUT replaces the definition, keeps the position and the credential.
	srv.MustPost(t, "orders/2", testserver.Event{ID: "e3"})
	code, _, out = call(t, http.MethodPut, srv.URL+"/subscriptions/"+id, map[string]any{
		"id": "other", "protocol": "HTTP", "sink": wh.URL,
		"config": map[string]string{"startafter": "0", "paused": "true"},
	})
	if code != http.StatusOK {
		t.Fatalf("put: %d %s", code, out)
	}
	var put map[string]any
	_ = json.Unmarshal(out, &put)
	if put["id"] != id || put["types"] != nil || put["status"].(map[string]any)["position"] != 2.0 || put["status"].(map[string]any)["lag"] != 1.0 {
		t.Fatalf("put answer %v", put)
	}
	var cred []byte
	if err := srv.Pool.QueryRow(t.Context(), `SELECT credential FROM fossil_subscriptions WHERE id = $1`, id).Scan(&cred); err != nil || !strings.Contains(string(cred), "s3cret") {
		t.Fatalf("credential after PUT without one: %s %v", cred, err)
	}
	if wh.optionsSent() != 1 {
		t.Fatalf("handshakes: %d; a PUT with the same sink does not repeat it", wh.optionsSent())
	}

	code, _, out = call(t, http.MethodDelete, srv.URL+"/subscriptions/"+id, nil)
	if code != http.StatusOK || !strings.Contains(string(out), id) {
		t.Fatalf("delete: %d %s", code, out)
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		code, hdr, out := call(t, m, srv.URL+"/subscriptions/"+id, httpSub(wh.URL, nil))
		if code != http.StatusNotFound || hdr.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s after delete: %d %s", m, code, out)
		}
	}
	code, _, _ = call(t, http.MethodGet, srv.URL+"/subscriptions/"+id+"/parked", nil)
	if code != http.StatusNotFound {
		t.Fatalf("parked of unknown: %d", code)
	}
}

func TestSubscriptionValidation(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	wh := newWebhook(t, nil)
	refuser := newWebhookNoHandshake(t)
	srv.MustPost(t, "a", testserver.Event{ID: "e1"})
	sub := func(extra map[string]any) map[string]any { return httpSub(wh.URL, extra) }
	cases := []struct {
		name string
		body any
		path string
	}{
		{"NotJSON", "{", "body"},
		{"UnknownField", sub(map[string]any{"color": "red"}), "color"},
		{"NoProtocol", map[string]any{"sink": wh.URL}, "protocol"},
		{"LowerCaseProtocol", map[string]any{"protocol": "http", "sink": wh.URL}, "protocol"},
		{"UnknownProtocol", map[string]any{"protocol": "MQTT", "sink": wh.URL}, "protocol"},
		{"NoSink", map[string]any{"protocol": "HTTP"}, "sink"},
		{"RelativeSink", map[string]any{"protocol": "HTTP", "sink": "/hook"}, "sink"},
		{"NATSWithoutSubject", map[string]any{"protocol": "NATS", "sink": "nats://127.0.0.1:4222"}, "protocolsettings.subject"},
		{"KafkaWithoutTopic", map[string]any{"protocol": "KAFKA", "sink": "kafka://127.0.0.1:9092"}, "protocolsettings.topicname"},
		{"TypesNotArray", sub(map[string]any{"types": "x"}), "types"},
		{"EmptyType", sub(map[string]any{"types": []string{""}}), "types[0]"},
		{"ConfigNotString", sub(map[string]any{"config": map[string]any{"maxattempts": 3}}), "config.maxattempts"},
		{"UnknownConfig", sub(map[string]any{"config": map[string]string{"colour": "red"}}), "config.colour"},
		{"BadStreams", sub(map[string]any{"config": map[string]string{"streams": "a/{"}}), "config.streams"},
		{"BadStartAfter", sub(map[string]any{"config": map[string]string{"startafter": "-1"}}), "config.startafter"},
		{"StartAfterBeyondHead", sub(map[string]any{"config": map[string]string{"startafter": "99"}}), "config.startafter"},
		{"BadMaxAttempts", sub(map[string]any{"config": map[string]string{"maxattempts": "0"}}), "config.maxattempts"},
		{"BadAckTimeout", sub(map[string]any{"config": map[string]string{"acktimeout": "soon"}}), "config.acktimeout"},
		{"BadHandshake", sub(map[string]any{"config": map[string]string{"handshake": "no"}}), "config.handshake"},
		{"BadPaused", sub(map[string]any{"config": map[string]string{"paused": "yes"}}), "config.paused"},
		{"CEHeader", sub(map[string]any{"protocolsettings": map[string]any{"headers": map[string]string{"ce-id": "x"}}}), "protocolsettings.headers.ce-id"},
		{"AuthorizationHeader", sub(map[string]any{"protocolsettings": map[string]any{"headers": map[string]string{"Authorization": "x"}}}), "protocolsettings.headers.Authorization"},
		{"UnknownSetting", sub(map[string]any{"protocolsettings": map[string]any{"qos": "1"}}), "protocolsettings.qos"},
		{"BadCredential", sub(map[string]any{"sinkcredential": map[string]any{"credentialtype": "MAGIC"}}), "sinkcredential.credentialtype"},
		{"FilterUnknownDialect", sub(map[string]any{"filters": []any{map[string]any{"regex": map[string]string{"type": "x"}}}}), "filters[0]"},
		{"FilterTwoDialects", sub(map[string]any{"filters": []any{map[string]any{"exact": map[string]string{"type": "x"}, "prefix": map[string]string{"type": "x"}}}}), "filters[0]"},
		{"FilterEmptyExact", sub(map[string]any{"filters": []any{map[string]any{"exact": map[string]string{"type": ""}}}}), "filters[0].exact.type"},
		{"FilterEmptyAll", sub(map[string]any{"filters": []any{map[string]any{"all": []any{}}}}), "filters[0].all"},
		{"FilterEmptyAny", sub(map[string]any{"filters": []any{map[string]any{"exact": map[string]string{"type": "t"}}, map[string]any{"any": []any{}}}}), "filters[1].any"},
		{"FilterNestedBad", sub(map[string]any{"filters": []any{map[string]any{"not": map[string]any{"all": []any{map[string]any{"suffix": map[string]string{"id": ""}}}}}}}), "filters[0].not.all[0].suffix.id"},
		{"CESQLDoesNotParse", sub(map[string]any{"filters": []any{map[string]any{"sql": "source = '/orders' OR"}}}), "filters[0].sql"},
		{"CESQLGarbage", sub(map[string]any{"filters": []any{map[string]any{"cesql": ")))("}}}), "filters[0].cesql"},
		{"CESQLEmpty", sub(map[string]any{"filters": []any{map[string]any{"sql": ""}}}), "filters[0].sql"},
		{"HandshakeRefused", map[string]any{"protocol": "HTTP", "sink": refuser.URL}, "sink"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, hdr, out := call(t, http.MethodPost, srv.URL+"/subscriptions", tc.body)
			if code != http.StatusBadRequest || hdr.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d (%s): %s", code, hdr.Get("Content-Type"), out)
			}
			var p struct {
				Detail string `json:"detail"`
			}
			_ = json.Unmarshal(out, &p)
			if !strings.HasPrefix(p.Detail, tc.path+": ") {
				t.Fatalf("detail %q does not name %s", p.Detail, tc.path)
			}
		})
	}
	// With the handshake off, a sink that refuses it is accepted and no
	// OPTIONS is sent.
	create(t, srv, map[string]any{"protocol": "HTTP", "sink": refuser.URL, "config": map[string]string{"handshake": "off"}})
	if n := refuser.optionsSent(); n != 0 {
		t.Errorf("OPTIONS sent %d times with the handshake off", n)
	}
	// SSE needs no sink.
	create(t, srv, map[string]any{"protocol": "SSE"})
}

// newWebhookNoHandshake answers OPTIONS without granting the origin.
func newWebhookNoHandshake(t testing.TB) *webhook {
	wh := newWebhook(t, nil)
	inner := wh.Server.Config.Handler
	wh.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			wh.mu.Lock()
			wh.options++
			wh.mu.Unlock()
			w.WriteHeader(http.StatusOK)
			return
		}
		inner.ServeHTTP(w, r)
	})
	return wh
}
