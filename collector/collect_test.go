package collector_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/fossil-events/fossil/problem"
)

// TestCollectPercentDecoding checks that ce-* header values are
// percent-decoded as the CloudEvents HTTP binding requires (section
// 3.1.3.2), and that the decoded value is what is stored.
func TestCollectPercentDecoding(t *testing.T) {
	t.Parallel()

	t.Run("Decodes", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name, sent, want string
		}{
			{name: "SpecExample", sent: "Euro%20%E2%82%AC%20%F0%9F%98%80", want: "Euro € 😀"},
			{name: "Percent", sent: "%25", want: "%"},
			{name: "PercentTwiceEncoded", sent: "%2525", want: "%25"},
			{name: "PercentInText", sent: "100%25%20sure", want: "100% sure"},
			{name: "LowercaseHex", sent: "%e2%82%ac", want: "€"},
			{name: "Quotes", sent: "%22quoted%22", want: `"quoted"`},
			{name: "PlusIsNotSpace", sent: "a+b", want: "a+b"},
			{name: "Unreserved", sent: "%7E%41", want: "~A"},
			{name: "NothingToDecode", sent: "plain-value", want: "plain-value"},
			{name: "RawUTF8", sent: "Euro €", want: "Euro €"},
		}
		b := setup(t)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				id := fmt.Sprintf("pct-%d", i)
				h := hdr("Fossil-Stream", "pct",
					"ce-specversion", "1.0", "ce-id", id+"%2Fx", "ce-source", "/pct%20src", "ce-type", "t%2Ep",
					"ce-subject", tt.sent, "ce-comment", tt.sent, "Content-Type", "text/plain")
				requireOK(t, b.post(t, h, []byte("data")), false)
				e := b.event(t, "/pct src", id+"/x")
				if e.Type != "t.p" || e.Doc["type"] != "t.p" || e.Doc["id"] != id+"/x" || e.Doc["source"] != "/pct src" {
					t.Errorf("id, source, type not decoded: %s", e.RawDoc)
				}
				if e.Subject == nil || *e.Subject != tt.want {
					t.Errorf("subject column = %v, want %q", e.Subject, tt.want)
				}
				if e.Doc["subject"] != tt.want {
					t.Errorf("doc subject = %q, want %q", e.Doc["subject"], tt.want)
				}
				if e.Doc["comment"] != tt.want {
					t.Errorf("doc extension comment = %q, want %q", e.Doc["comment"], tt.want)
				}

				// The same event in structured mode, with the decoded
				// values, is the same event: a duplicate.
				a := attrs{
					"specversion": "1.0", "id": id + "/x", "source": "/pct src", "type": "t.p",
					"subject": tt.want, "comment": tt.want, "datacontenttype": "text/plain", "data": "data",
				}
				h, body := encode(t, structured, "pct", a)
				requireOK(t, b.post(t, h, body), true)
			})
		}
	})

	t.Run("RejectsInvalid", func(t *testing.T) {
		t.Parallel()
		tests := []struct{ name, sent string }{
			{name: "NotHex", sent: "%G1"},
			{name: "SecondNotHex", sent: "abc%4G"},
			{name: "TrailingOneDigit", sent: "abc%4"},
			{name: "TrailingPercent", sent: "abc%"},
			{name: "LonePercent", sent: "%"},
			{name: "InvalidUTF8", sent: "%FF"},
			{name: "InvalidUTF8Sequence", sent: "%C3%28"},
			{name: "TruncatedUTF8", sent: "%E2%82"},
			{name: "Surrogate", sent: "%ED%A0%80"},
			{name: "NUL", sent: "a%00b"},
			{name: "Newline", sent: "a%0Ab"},
			{name: "DEL", sent: "a%7Fb"},
			{name: "C1Control", sent: "a%C2%85b"},
		}
		b := setup(t)
		t.Cleanup(func() { b.requireEmpty(t) })
		for _, tt := range tests {
			for _, attr := range []string{"subject", "id", "comment"} {
				t.Run(tt.name+"/"+attr, func(t *testing.T) {
					t.Parallel()
					h := hdr("Fossil-Stream", "pct", "ce-specversion", "1.0", "ce-id", "x", "ce-source", "/s", "ce-type", "t", "Content-Type", "text/plain")
					h["ce-"+attr] = []string{tt.sent}
					requireInvalid(t, b.post(t, h, []byte("data")), "header.ce-"+attr)
				})
			}
		}
	})
}

// TestCollectSuccess checks the 200 response of each content mode:
// headers, body in request order, and what is stored.
func TestCollectSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)

	h, body := encode(t, binary, "orders/1", newAttrs("a"))
	pos := requireOK(t, b.post(t, h, body), false)
	want := []position{{ID: "a", Source: "/fossil/tests", Number: 1, Sequence: 1}}
	requirePositions(t, pos, want)

	h, body = encode(t, structured, "orders/1", newAttrs("b"))
	pos = requireOK(t, b.post(t, h, body), false)
	requirePositions(t, pos, []position{{ID: "b", Source: "/fossil/tests", Number: 2, Sequence: 2}})

	// A batch into another stream, in an order that is not sorted.
	h, body = encode(t, batch, "orders/2", newAttrs("z"), newAttrs("c"), newAttrs("m"))
	res := b.post(t, h, body)
	pos = requireOK(t, res, false)
	requirePositions(t, pos, []position{
		{ID: "z", Source: "/fossil/tests", Number: 3, Sequence: 1},
		{ID: "c", Source: "/fossil/tests", Number: 4, Sequence: 2},
		{ID: "m", Source: "/fossil/tests", Number: 5, Sequence: 3},
	})
	if res.header.Get("Fossil-Event-Number") != "5" || res.header.Get("Fossil-Sequence-Number") != "3" {
		t.Errorf("batch headers = %q/%q, want the last event's 5/3", res.header.Get("Fossil-Event-Number"), res.header.Get("Fossil-Sequence-Number"))
	}

	// A batch of one is fine too.
	h, body = encode(t, batch, "orders/1", newAttrs("d"))
	requirePositions(t, requireOK(t, b.post(t, h, body), false), []position{{ID: "d", Source: "/fossil/tests", Number: 6, Sequence: 3}})

	stored := b.events(t)
	wantRows := []struct {
		id, stream string
		seq        int64
	}{{"a", "orders/1", 1}, {"b", "orders/1", 2}, {"z", "orders/2", 1}, {"c", "orders/2", 2}, {"m", "orders/2", 3}, {"d", "orders/1", 3}}
	if len(stored) != len(wantRows) {
		t.Fatalf("%d events stored, want %d", len(stored), len(wantRows))
	}
	for i, w := range wantRows {
		e := stored[i]
		if e.Number != int64(i+1) || e.ID != w.id || e.Stream != w.stream || e.Sequence != w.seq {
			t.Errorf("row %d = #%d %s %s/%d, want #%d %s %s/%d", i, e.Number, e.ID, e.Stream, e.Sequence, i+1, w.id, w.stream, w.seq)
		}
		if e.Doc["id"] != w.id || e.Doc["type"] != "com.example.tested" || e.Doc["specversion"] != "1.0" {
			t.Errorf("row %d doc = %s", i, e.RawDoc)
		}
		if !jsonEqual(t, []byte(fmt.Sprintf(`{"id":%q,"n":1}`, w.id)), mustJSON(t, e.Doc["data"])) {
			t.Errorf("row %d data = %v", i, e.Doc["data"])
		}
		for k := range e.Doc {
			if len(k) >= 6 && k[:6] == "fossil" {
				t.Errorf("row %d doc carries %s: the doc holds no fossil* extension", i, k)
			}
		}
	}
	b.requireDense(t, 6)

	t.Run("WrongMethod", func(t *testing.T) {
		t.Parallel()
		req, err := http.NewRequest(http.MethodGet, b.url+"/collect", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Content-Type") != problem.ContentType {
			t.Errorf("GET /collect = %d %s, want 405 problem", res.StatusCode, res.Header.Get("Content-Type"))
		}
	})
}

// TestCollectIdempotency covers retries, id conflicts, the expected
// sequence and Fossil-Replace.
func TestCollectIdempotency(t *testing.T) {
	t.Parallel()

	t.Run("IdenticalRetryIsDuplicate", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		requireOK(t, postEvent(t, b, binary, "s", newAttrs("other")), false)
		first := requireOK(t, postEvent(t, b, binary, "s", newAttrs("a")), false)
		for range 3 {
			again := requireOK(t, postEvent(t, b, binary, "s", newAttrs("a")), true)
			requirePositions(t, again, first)
		}
		// The same event in the other modes is the same event.
		requirePositions(t, requireOK(t, postEvent(t, b, structured, "s", newAttrs("a")), true), first)
		requirePositions(t, requireOK(t, postEvent(t, b, batch, "s", newAttrs("a")), true), first)
		b.requireDense(t, 2)
	})

	t.Run("BatchRetryIsDuplicate", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first := requireOK(t, postEvent(t, b, batch, "s", newAttrs("a"), newAttrs("b"), newAttrs("c")), false)
		requirePositions(t, requireOK(t, postEvent(t, b, batch, "s", newAttrs("a"), newAttrs("b"), newAttrs("c")), true), first)
		// A retry that adds an event stores only the new one.
		more := requireOK(t, postEvent(t, b, batch, "s", newAttrs("a"), newAttrs("b"), newAttrs("c"), newAttrs("d")), false)
		requirePositions(t, more, append(first, position{ID: "d", Source: "/fossil/tests", Number: 4, Sequence: 4}))
		b.requireDense(t, 4)
	})

	t.Run("SameIDOtherContentConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		requireOK(t, postEvent(t, b, binary, "s", newAttrs("a")), false)
		changed := newAttrs("a")
		changed["data"] = map[string]any{"n": 2}
		for _, m := range []mode{binary, structured, batch} {
			p := requireProblem(t, postEvent(t, b, m, "s", changed), http.StatusConflict)
			if p.Type != problem.TypeURI("conflict") {
				t.Errorf("%s: type = %q", m, p.Type)
			}
		}
		// A batch that holds the conflicting event stores nothing.
		requireProblem(t, postEvent(t, b, batch, "s", newAttrs("new"), changed), http.StatusConflict)
		b.requireDense(t, 1)
		if e := b.event(t, "/fossil/tests", "a"); fmt.Sprint(e.Doc["data"]) != "map[id:a n:1]" {
			t.Errorf("original content changed: %s", e.RawDoc)
		}
	})

	t.Run("SameIDOtherSourceIsAnotherEvent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		requireOK(t, postEvent(t, b, binary, "s", newAttrs("a")), false)
		other := newAttrs("a")
		other["source"] = "/another/source"
		requirePositions(t, requireOK(t, postEvent(t, b, binary, "s", other), false),
			[]position{{ID: "a", Source: "/another/source", Number: 2, Sequence: 2}})
	})

	t.Run("SameEventOtherStreamConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		requireOK(t, postEvent(t, b, binary, "s", newAttrs("a")), false)
		requireProblem(t, postEvent(t, b, binary, "t", newAttrs("a")), http.StatusConflict)
		requireProblem(t, postEvent(t, b, batch, "t", newAttrs("b"), newAttrs("a")), http.StatusConflict)
		b.requireDense(t, 1)
	})

	t.Run("ExpectedSequence", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		expect := func(m mode, n string, evs ...attrs) response {
			h, body := encode(t, m, "s", evs...)
			h.Set("Fossil-Expected-Sequence-Number", n)
			return b.post(t, h, body)
		}
		// 1 on an empty stream.
		requirePositions(t, requireOK(t, expect(binary, "1", newAttrs("a")), false), []position{{ID: "a", Source: "/fossil/tests", Number: 1, Sequence: 1}})
		// Mismatch: 409 with both sequences, nothing written.
		for _, tc := range []struct {
			sent string
			want int64
		}{{"1", 1}, {"3", 3}, {"1000", 1000}} {
			p := requireProblem(t, expect(structured, tc.sent, newAttrs("b")), http.StatusConflict)
			if p.Type != problem.TypeURI("sequence-conflict") {
				t.Errorf("type = %q", p.Type)
			}
			if p.ExpectedSequence == nil || *p.ExpectedSequence != tc.want || p.CurrentSequence == nil || *p.CurrentSequence != 1 {
				t.Errorf("expected_sequence/current_sequence = %v/%v, want %d/1", p.ExpectedSequence, p.CurrentSequence, tc.want)
			}
		}
		// Another stream is empty: current_sequence 0.
		h, body := encode(t, binary, "empty", newAttrs("e"))
		h.Set("Fossil-Expected-Sequence-Number", "2")
		p := requireProblem(t, b.post(t, h, body), http.StatusConflict)
		if p.ExpectedSequence == nil || *p.ExpectedSequence != 2 || p.CurrentSequence == nil || *p.CurrentSequence != 0 {
			t.Errorf("expected_sequence/current_sequence = %v/%v, want 2/0", p.ExpectedSequence, p.CurrentSequence)
		}
		b.requireDense(t, 1)
		// A batch: the first new event gets the expected sequence.
		requirePositions(t, requireOK(t, expect(batch, "2", newAttrs("b"), newAttrs("c")), false), []position{
			{ID: "b", Source: "/fossil/tests", Number: 2, Sequence: 2},
			{ID: "c", Source: "/fossil/tests", Number: 3, Sequence: 3},
		})
		// Retrying a committed request is a duplicate although the
		// expected sequence no longer holds.
		requireOK(t, expect(binary, "1", newAttrs("a")), true)
		requireOK(t, expect(batch, "2", newAttrs("b"), newAttrs("c")), true)
		requireOK(t, expect(binary, "4", newAttrs("d")), false)
		b.requireDense(t, 4)
	})

	t.Run("Replace", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		requireOK(t, postEvent(t, b, binary, "s", newAttrs("a")), false)
		orig := requireOK(t, postEvent(t, b, binary, "s", newAttrs("target")), false)
		requireOK(t, postEvent(t, b, binary, "s", newAttrs("c")), false)
		requireOK(t, postEvent(t, b, binary, "other", newAttrs("d")), false)

		replacement := newAttrs("target")
		replacement["data"] = map[string]any{"redacted": true}
		replacement["subject"] = "gdpr"
		replacement["type"] = "com.example.redacted"
		for _, m := range []mode{binary, structured} {
			h, body := encode(t, m, "s", replacement)
			h.Set("Fossil-Replace", "true")
			requirePositions(t, requireOK(t, b.post(t, h, body), false), orig)
		}
		e := b.event(t, "/fossil/tests", "target")
		if e.Number != orig[0].Number || e.Sequence != orig[0].Sequence || e.Stream != "s" {
			t.Errorf("replaced event moved: #%d %s/%d", e.Number, e.Stream, e.Sequence)
		}
		if fmt.Sprint(e.Doc["data"]) != "map[redacted:true]" || e.Doc["subject"] != "gdpr" || e.Type != "com.example.redacted" || e.Subject == nil || *e.Subject != "gdpr" {
			t.Errorf("content not replaced: type %q subject %v doc %s", e.Type, e.Subject, e.RawDoc)
		}
		b.requireDense(t, 4)

		// The old content is gone: sending it again is a conflict.
		requireProblem(t, postEvent(t, b, binary, "s", newAttrs("target")), http.StatusConflict)

		// Replace, case-insensitive "TRUE", in a batch.
		h, body := encode(t, batch, "s", newAttrs("a"), newAttrs("c"))
		h.Set("Fossil-Replace", "TRUE")
		requireOK(t, b.post(t, h, body), false)

		// Unknown event: 404. Other stream: 409. Nothing changes.
		h, body = encode(t, binary, "s", newAttrs("unknown"))
		h.Set("Fossil-Replace", "true")
		if p := requireProblem(t, b.post(t, h, body), http.StatusNotFound); p.Type != problem.TypeURI("not-found") {
			t.Errorf("type = %q", p.Type)
		}
		h, body = encode(t, binary, "other", replacement)
		h.Set("Fossil-Replace", "true")
		requireProblem(t, b.post(t, h, body), http.StatusConflict)
		h, body = encode(t, batch, "s", newAttrs("a"), newAttrs("unknown"))
		h.Set("Fossil-Replace", "true")
		requireProblem(t, b.post(t, h, body), http.StatusNotFound)
		b.requireDense(t, 4)
		if e2 := b.event(t, "/fossil/tests", "target"); e2.RawDoc != e.RawDoc {
			t.Errorf("a failed replacement changed the event: %s", e2.RawDoc)
		}

		// Fossil-Replace: false is a plain append.
		h, body = encode(t, binary, "s", newAttrs("e"))
		h.Set("Fossil-Replace", "false")
		requireOK(t, b.post(t, h, body), false)
		b.requireDense(t, 5)
	})
}

// postEvent posts evs in mode m to stream.
func postEvent(t *testing.T, b *testBundle, m mode, stream string, evs ...attrs) response {
	t.Helper()
	h, body := encode(t, m, stream, evs...)
	return b.post(t, h, body)
}

func requirePositions(t *testing.T, got, want []position) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("positions = %+v, want %+v", got, want)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := jsonMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCollectKeepsURIAttributesVerbatim: source (part of the identity) and
// dataschema are stored and answered exactly as sent, not as a URI library
// would re-serialise them.
func TestCollectKeepsURIAttributesVerbatim(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct{ name, source, schema string }{
		{name: "NonASCIIPath", source: "/users/josé", schema: "https://example.com/schémas/v1.json"},
		{name: "UppercaseScheme", source: "HTTP://Example.COM/Path", schema: "HTTPS://example.com/s"},
		{name: "Space", source: "/a b", schema: "https://example.com/a b"},
		{name: "EscapedSlash", source: "http://x/a%2Fb", schema: "urn:schema:a%2Fb"},
		{name: "QueryAndFragment", source: "https://example.com/café?q=ü#f g", schema: "https://example.com/s#/defs/x"},
	}
	for i, tt := range tests {
		for _, m := range []mode{binary, structured} {
			t.Run(tt.name+"/"+string(m), func(t *testing.T) {
				t.Parallel()
				a := newAttrs(fmt.Sprintf("uri-%d-%s", i, m))
				a["source"], a["dataschema"] = tt.source, tt.schema
				h, body := encode(t, m, "uri", a)
				if m == binary {
					// Non-ASCII and spaces are percent-encoded in headers.
					h["ce-source"] = []string{pctEncode(tt.source)}
					h["ce-dataschema"] = []string{pctEncode(tt.schema)}
				}
				pos := requireOK(t, b.post(t, h, body), false)
				if pos[0].Source != tt.source {
					t.Errorf("response source = %q, want %q", pos[0].Source, tt.source)
				}
				e := b.event(t, tt.source, a["id"].(string))
				if e.Doc["source"] != tt.source || e.Doc["dataschema"] != tt.schema {
					t.Errorf("doc source/dataschema = %q/%q, want %q/%q", e.Doc["source"], e.Doc["dataschema"], tt.source, tt.schema)
				}
			})
		}
	}
}

// pctEncode percent-encodes what the HTTP binding says must be: space,
// double quote, percent and everything outside printable ASCII.
func pctEncode(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			out = append(out, fmt.Sprintf("%%%02X", c)...)
			continue
		}
		out = append(out, c)
	}
	return string(out)
}
