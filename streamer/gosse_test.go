package streamer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	sse "github.com/tmaxmax/go-sse"

	"github.com/fossil-events/fossil/internal/testserver"
)

// roundTrip is one event as posted and what must come back.
type roundTrip struct {
	name    string
	headers map[string]string // binary mode: ce-* and Content-Type
	body    []byte            // binary mode data, or the structured event
	// want holds the attributes and extensions expected in the received
	// JSON, with their JSON types (float64 for numbers, bool, string).
	want map[string]any
	// wantData is the expected "data" member (decoded JSON) or, for
	// wantBase64, the raw bytes expected in "data_base64".
	wantData   any
	wantBase64 []byte
}

// TestGoSSEClientRoundTrip uses an independent SSE client,
// github.com/tmaxmax/go-sse (with its buffer raised above the 64 KiB
// default, for large events), as a real client of /sse, and checks that
// every attribute, every extension type (string in binary mode; integer and
// boolean in structured mode, where JSON has those types) and every kind of
// data (JSON, text, binary as data_base64, a 64 KiB event) round-trips. The
// received JSON is also parsed with the CloudEvents SDK, which must accept
// it as a valid event. Half the events are history when the client
// connects, half arrive live.
func TestGoSSEClientRoundTrip(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)

	binary := make([]byte, 512)
	_, _ = rand.Read(binary)
	binary[0], binary[1] = 0xff, 0x00 // certainly not UTF-8
	large := make([]byte, 64<<10)
	_, _ = rand.Read(large)
	largeText := strings.Repeat("0123456789abcdef", 64<<10/16)

	cases := []roundTrip{
		{
			name: "BinaryJSON",
			headers: map[string]string{
				"ce-id": "json-1", "ce-source": "/gosse/source", "ce-type": "com.example.json",
				"ce-subject":    "sub%2Fject%20%C3%BC", // percent-encoded, as the HTTP binding requires
				"ce-time":       "2024-05-06T07:08:09.123456789Z",
				"ce-dataschema": "https://example.com/schemas/json.json",
				"ce-myext":      "hello%20w%C3%B6rld",
				"ce-plain":      "plain-value",
				"Content-Type":  "application/json",
			},
			body: []byte(`{ "a": 1, "b": [true, null, "x"], "c": {"d": 1.5} }`),
			want: map[string]any{
				"specversion": "1.0", "id": "json-1", "source": "/gosse/source", "type": "com.example.json",
				"subject": "sub/ject ü", "time": "2024-05-06T07:08:09.123456789Z",
				"dataschema": "https://example.com/schemas/json.json", "datacontenttype": "application/json",
				"myext": "hello wörld", "plain": "plain-value",
			},
			wantData: map[string]any{"a": 1.0, "b": []any{true, nil, "x"}, "c": map[string]any{"d": 1.5}},
		},
		{
			name: "BinaryText",
			headers: map[string]string{
				"ce-id": "text-1", "ce-source": "/gosse/source", "ce-type": "com.example.text",
				"ce-time":      "2024-05-06T09:08:09+02:00", // normalised to UTC
				"Content-Type": "text/plain; charset=utf-8",
			},
			body: []byte("héllo\nwörld \"quoted\" \u2028 end"),
			want: map[string]any{
				"id": "text-1", "type": "com.example.text", "time": "2024-05-06T07:08:09Z",
				"datacontenttype": "text/plain; charset=utf-8",
			},
			wantData: "héllo\nwörld \"quoted\" \u2028 end",
		},
		{
			name: "BinaryOctetStream",
			headers: map[string]string{
				"ce-id": "bin-1", "ce-source": "/gosse/source", "ce-type": "com.example.binary",
				"Content-Type": "application/octet-stream",
			},
			body:       binary,
			want:       map[string]any{"id": "bin-1", "type": "com.example.binary", "datacontenttype": "application/octet-stream"},
			wantBase64: binary,
		},
		{
			name: "StructuredTypedExtensions",
			headers: map[string]string{
				"Content-Type": "application/cloudevents+json; charset=UTF-8",
			},
			body: []byte(`{"specversion":"1.0","id":"typed-1","source":"/gosse/source","type":"com.example.typed",
				"subject":"typed","myint":42,"myneg":-2147483648,"mybool":true,"myfalse":false,"mystr":"42",
				"datacontenttype":"application/json","data":{"k":"v"}}`),
			want: map[string]any{
				"id": "typed-1", "type": "com.example.typed", "subject": "typed", "myint": 42.0, "myneg": -2147483648.0,
				"mybool": true, "myfalse": false, "mystr": "42", "datacontenttype": "application/json",
			},
			wantData: map[string]any{"k": "v"},
		},
		{
			name: "StructuredBase64",
			headers: map[string]string{
				"Content-Type": "application/cloudevents+json",
			},
			body: []byte(`{"specversion":"1.0","id":"b64-1","source":"/gosse/source","type":"com.example.b64",
				"datacontenttype":"image/png","data_base64":"` + base64.StdEncoding.EncodeToString(binary[:100]) + `"}`),
			want:       map[string]any{"id": "b64-1", "type": "com.example.b64", "datacontenttype": "image/png"},
			wantBase64: binary[:100],
		},
		{
			name: "LargeBinary64KiB",
			headers: map[string]string{
				"ce-id": "large-1", "ce-source": "/gosse/source", "ce-type": "com.example.large",
				"Content-Type": "application/octet-stream",
			},
			body:       large,
			want:       map[string]any{"id": "large-1", "type": "com.example.large", "datacontenttype": "application/octet-stream"},
			wantBase64: large,
		},
		{
			name: "LargeJSON64KiB",
			headers: map[string]string{
				"ce-id": "large-2", "ce-source": "/gosse/source", "ce-type": "com.example.large",
				"Content-Type": "application/json",
			},
			body:     []byte(`{"text":"` + largeText + `"}`),
			want:     map[string]any{"id": "large-2", "type": "com.example.large", "datacontenttype": "application/json"},
			wantData: map[string]any{"text": largeText},
		},
	}

	client := newClient(t)
	postCase := func(i int) int64 {
		t.Helper()
		c := cases[i]
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/collect", bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Fossil-Stream", "gosse/"+c.name)
		if _, ok := c.headers["ce-id"]; ok {
			req.Header.Set("ce-specversion", "1.0")
		}
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		return mustOK(t, c.name, do(client, req))
	}
	half := len(cases) / 2
	for i := range half {
		if n := postCase(i); n != int64(i+1) {
			t.Fatalf("%s got number %d", cases[i].name, n)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+ssePath("gosse/{name}"), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sseClient := &sse.Client{
		HTTPClient: client,
		Backoff:    sse.Backoff{InitialInterval: 50 * time.Millisecond, MaxRetries: 5},
	}
	conn := sseClient.NewConnection(req)
	conn.Buffer(make([]byte, 0, 64<<10), 1<<20)
	received := make(chan sse.Event, len(cases))
	conn.SubscribeMessages(func(ev sse.Event) { received <- ev })
	var wg sync.WaitGroup
	var connectErr error
	wg.Go(func() { connectErr = conn.Connect() })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if connectErr != nil && ctx.Err() == nil {
			t.Errorf("go-sse Connect: %v", connectErr)
		}
	})

	for i := half; i < len(cases); i++ {
		postCase(i)
	}
	for i, c := range cases {
		var ev sse.Event
		select {
		case ev = <-received:
		case <-time.After(10 * time.Second):
			t.Fatalf("go-sse received %d of %d events", i, len(cases))
		}
		t.Run(c.name, func(t *testing.T) { checkRoundTrip(t, c, int64(i+1), ev) })
	}
}

func checkRoundTrip(t *testing.T, c roundTrip, number int64, ev sse.Event) {
	if ev.LastEventID != fmt.Sprint(number) || ev.Type != "" {
		t.Fatalf("id %q type %q, want id %d and no event type", ev.LastEventID, ev.Type, number)
	}
	if strings.Contains(ev.Data, "\n") {
		t.Fatal("the event JSON spans several lines")
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil {
		t.Fatalf("data is not JSON: %v", err)
	}
	want := map[string]any{
		"specversion":            "1.0",
		"source":                 "/gosse/source",
		"fossileventnumber":      float64(number),
		"fossilsequenceinstream": 1.0,
		"fossilstream":           "gosse/" + c.name,
	}
	for k, v := range c.want {
		want[k] = v
	}
	for k, v := range want {
		if fmt.Sprintf("%T %v", got[k], got[k]) != fmt.Sprintf("%T %v", v, v) {
			t.Errorf("%s = %T %v, want %T %v", k, got[k], got[k], v, v)
		}
	}
	switch {
	case c.wantBase64 != nil:
		if _, ok := got["data"]; ok {
			t.Error("binary data came back as data, not data_base64")
		}
		s, _ := got["data_base64"].(string)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || !bytes.Equal(b, c.wantBase64) {
			t.Errorf("data_base64 decodes to %d bytes (%v), want the %d posted", len(b), err, len(c.wantBase64))
		}
	default:
		if _, ok := got["data_base64"]; ok {
			t.Error("unexpected data_base64")
		}
		if g, w := mustJSON(t, got["data"]), mustJSON(t, c.wantData); g != w {
			t.Errorf("data = %.200s, want %.200s", g, w)
		}
	}
	// Nothing unexpected: every member is an attribute we posted or a
	// fossil extension.
	for k := range got {
		if _, ok := want[k]; !ok && k != "data" && k != "data_base64" {
			t.Errorf("unexpected member %q", k)
		}
	}

	// The CloudEvents SDK reads the same JSON as a valid event with typed
	// extensions.
	var ce event.Event
	if err := json.Unmarshal([]byte(ev.Data), &ce); err != nil {
		t.Fatalf("CloudEvents SDK: %v", err)
	}
	if err := ce.Validate(); err != nil {
		t.Fatalf("CloudEvents SDK: invalid event: %v", err)
	}
	exts := ce.Extensions()
	if exts["fossileventnumber"] != int32(number) || exts["fossilstream"] != "gosse/"+c.name {
		t.Errorf("SDK extensions: %v", exts)
	}
	for k, v := range c.want {
		switch v := v.(type) {
		case float64:
			if exts[k] != int32(v) {
				t.Errorf("SDK extension %s = %T %v, want int32 %v", k, exts[k], exts[k], v)
			}
		case bool:
			if exts[k] != v {
				t.Errorf("SDK extension %s = %T %v, want bool %v", k, exts[k], exts[k], v)
			}
		}
	}
	if c.wantBase64 != nil && !bytes.Equal(ce.Data(), c.wantBase64) {
		t.Errorf("SDK data: %d bytes, want %d", len(ce.Data()), len(c.wantBase64))
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(buf.String())
}
