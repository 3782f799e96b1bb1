package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fossil-events/fossil/fossil"
)

// fuzzMaxBody is the body limit of FuzzDecode, small so that 413s happen.
const fuzzMaxBody = 4096

// FuzzDecode feeds arbitrary headers and bodies through Decode. It must
// not panic, must fail only with the documented error types, and every
// event it accepts must have the required attributes and a document that
// decodes again, in structured mode, to the same document.
func FuzzDecode(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, contentType, headers string, body []byte) {
		decoded, err := Decode(fuzzRequest(contentType, headers, body))
		if err != nil {
			var inv *fossil.InvalidError
			var tooLarge *http.MaxBytesError
			if !errors.As(err, &inv) && !errors.Is(err, fossil.ErrUnsupportedMediaType) && !errors.As(err, &tooLarge) {
				t.Fatalf("Decode returned an undocumented error %T: %v", err, err)
			}
			if errors.As(err, &inv) && !errors.Is(err, fossil.ErrInvalid) {
				t.Fatalf("InvalidError does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if len(decoded) == 0 {
			t.Fatal("Decode returned no event and no error")
		}
		for i, d := range decoded {
			e := d.Event
			if e == nil || e.ID == "" || e.Source == "" || e.Type == "" {
				t.Fatalf("event %d lacks a required attribute: %+v", i, e)
			}
			requireCanonicalDoc(t, e.Doc)
			// Stored documents are served in structured mode; collecting
			// one again must give the very same document, or retries of
			// served events would not be recognised as duplicates.
			again, err := decodeStructured("body", e.Doc, nil)
			if err != nil {
				t.Fatalf("event %d: the stored document %s does not decode: %v", i, e.Doc, err)
			}
			if !bytes.Equal(again.Event.Doc, e.Doc) {
				t.Fatalf("event %d: document changes when collected again:\n%s\n%s", i, e.Doc, again.Event.Doc)
			}
			if again.Event.ID != e.ID || again.Event.Source != e.Source || again.Event.Type != e.Type ||
				again.Event.Subject != e.Subject || !again.Event.Time.Equal(e.Time) {
				t.Fatalf("event %d: columns change when collected again: %+v vs %+v", i, again.Event, e)
			}
		}
	})
}

// addDecodeSeeds adds the seed inputs of FuzzDecode.
func addDecodeSeeds(f *testing.F) {
	seeds := []struct{ contentType, headers, body string }{
		{"application/json", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t", `{"a":1}`},
		{"text/plain; charset=utf-8", "ce-specversion: 1.0\nce-id: Euro%20%E2%82%AC\nce-source: /s\nce-type: t\nce-subject: %25", "hello"},
		{"", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-myext: v", "\x00\xff"},
		{"application/octet-stream", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-time: 2018-04-05T03:56:24Z", "bytes"},
		{"application/cloudevents+json", "", `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":[1,2]}}`},
		{"Application/CloudEvents+JSON; charset=UTF-8", "", `{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"x","ext":5}`},
		{"application/cloudevents+json", "", `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAEC"}`},
		{"application/cloudevents+json", "", `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AAEC"}`},
		{"application/cloudevents-batch+json", "", `[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t","subject":"x","dataschema":"http://x/s"}]`},
		{"application/cloudevents-batch+json", "", `[]`},
		{"application/cloudevents+xml", "", `<x/>`},
		{"text/plain", "", "not an event"},
		{"application/json", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t", strings.Repeat("x", fuzzMaxBody+1)},
		{"application/json", "ce-specversion: 1.0\nce-id: %G1\nce-source: /s\nce-type: t", `1`},
		{"", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-data: x\nce-datacontenttype: text/plain", "x"},
		{"application/json", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-data: x", `{"a":1}`},
		{"application/cloudevents+json", "", "{\"specversion\":\"1.0\",\"id\":\"0\",\"source\":\"0\",\"type\":\"0\",\"data\":{\"\xe1\":0}}"},
		{"", "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t", "\"\xff\""},
	}
	for _, s := range seeds {
		f.Add(s.contentType, s.headers, []byte(s.body))
	}
}

// fuzzRequest builds the request of a FuzzDecode input.
func fuzzRequest(contentType, headers string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/collect", bytes.NewReader(body))
	for _, line := range strings.Split(headers, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			continue
		}
		// As net/http's server hands them over: canonical names,
		// values without surrounding white space.
		r.Header.Add(textproto.CanonicalMIMEHeaderKey(name), strings.Trim(value, " \t"))
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, fuzzMaxBody)
	return r
}

// requireCanonicalDoc checks that doc is one JSON object whose member
// names are unique and that holds the required attributes.
func requireCanonicalDoc(t *testing.T, doc []byte) {
	t.Helper()
	if !json.Valid(doc) || !utf8.Valid(doc) {
		t.Fatalf("document is not valid JSON: %q", doc)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("document is not an object: %s", doc)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		name := tok.(string)
		if seen[name] {
			t.Fatalf("document has member %q twice: %s", name, doc)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"specversion", "id", "source", "type"} {
		if !seen[name] {
			t.Fatalf("document lacks %s: %s", name, doc)
		}
	}
}

// FuzzPercentDecode checks percentDecode against net/url's decoder, which
// implements the same %XX rule without the UTF-8 requirement.
func FuzzPercentDecode(f *testing.F) {
	for _, s := range []string{"", "plain", "Euro%20%E2%82%AC%20%F0%9F%98%80", "%25", "%2525", "%G1", "abc%4", "%", "%FF", "%e2%82%ac", "a+b", "%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := percentDecode(s)
		want, stdErr := url.PathUnescape(s)
		switch {
		case stdErr != nil:
			if err == nil {
				t.Fatalf("percentDecode(%q) = %q, but it is not valid percent-encoding", s, got)
			}
		case !utf8.ValidString(want):
			if err == nil {
				t.Fatalf("percentDecode(%q) = %q, which is not UTF-8", s, got)
			}
		default:
			if err != nil || got != want {
				t.Fatalf("percentDecode(%q) = %q, %v; want %q", s, got, err, want)
			}
			// Encoding every byte and decoding gives the value back.
			var enc strings.Builder
			for i := 0; i < len(got); i++ {
				fmt.Fprintf(&enc, "%%%02X", got[i])
			}
			if back, err := percentDecode(enc.String()); err != nil || back != got {
				t.Fatalf("round trip of %q: %q, %v", got, back, err)
			}
		}
	})
}
