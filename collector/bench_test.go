package collector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchData is a typical small JSON payload.
var benchData = []byte(`{"visitor":"6f1c2a","page":"/pricing","referrer":"https://example.com/blog/post","duration_ms":5234,"tags":["a","b","c"]}`)

func benchDecode(b *testing.B, r *http.Request, body []byte) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if _, err := Decode(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBinary decodes one binary-mode event with a
// percent-encoded attribute and an extension.
func BenchmarkDecodeBinary(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "/collect", nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Ce-Specversion", "1.0")
	r.Header.Set("Ce-Id", "6f1c2a-0001")
	r.Header.Set("Ce-Source", "/web/frontend")
	r.Header.Set("Ce-Type", "com.example.page.viewed")
	r.Header.Set("Ce-Time", "2024-04-05T03:56:24.123Z")
	r.Header.Set("Ce-Subject", "Euro%20%E2%82%AC")
	r.Header.Set("Ce-Tenant", "acme")
	benchDecode(b, r, benchData)
}

func structuredEvent(b *testing.B, id string) []byte {
	ev := map[string]any{
		"specversion": "1.0", "id": id, "source": "/web/frontend", "type": "com.example.page.viewed",
		"time": "2024-04-05T03:56:24.123Z", "subject": "Euro €", "tenant": "acme",
		"datacontenttype": "application/json", "data": json.RawMessage(benchData),
	}
	body, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecodeStructured decodes the same event in structured mode.
func BenchmarkDecodeStructured(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "/collect", nil)
	r.Header.Set("Content-Type", "application/cloudevents+json; charset=UTF-8")
	benchDecode(b, r, structuredEvent(b, "6f1c2a-0001"))
}

// BenchmarkDecodeBatch decodes a batch of 100 such events.
func BenchmarkDecodeBatch(b *testing.B) {
	members := make([]string, 100)
	for i := range members {
		members[i] = string(structuredEvent(b, fmt.Sprintf("6f1c2a-%04d", i)))
	}
	r := httptest.NewRequest(http.MethodPost, "/collect", nil)
	r.Header.Set("Content-Type", "application/cloudevents-batch+json")
	benchDecode(b, r, []byte("["+strings.Join(members, ",")+"]"))
}
