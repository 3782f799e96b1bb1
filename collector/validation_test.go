package collector_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/problem"
)

// TestCollectRejectsInvalidAttributes sends every attribute-level
// validation failure of api.md in each content mode where it can be
// expressed. A batch carries two valid events before the bad one, which
// must be named body[2], and nothing may be stored.
func TestCollectRejectsInvalidAttributes(t *testing.T) {
	t.Parallel()

	all := []mode{binary, structured, batch}
	json := []mode{structured, batch} // values binary mode cannot express
	set := func(name string, v any) func(attrs) { return func(a attrs) { a[name] = v } }
	del := func(name string) func(attrs) { return func(a attrs) { delete(a, name) } }

	tests := []struct {
		name   string
		modes  []mode
		mutate func(attrs)
		attr   string // the attribute the problem must name
		binLoc string // binary-mode location when not header.ce-<attr>
	}{
		{name: "MissingID", modes: all, mutate: del("id"), attr: "id"},
		{name: "EmptyID", modes: all, mutate: set("id", ""), attr: "id"},
		{name: "NonStringID", modes: json, mutate: set("id", 42), attr: "id"},
		{name: "MissingSource", modes: all, mutate: del("source"), attr: "source"},
		{name: "EmptySource", modes: all, mutate: set("source", ""), attr: "source"},
		{name: "SourceNotAURIReference", modes: all, mutate: set("source", "http://[::1"), attr: "source"},
		{name: "SourceBadEscape", modes: all, mutate: set("source", "/a%zz"), attr: "source"},
		{name: "MissingType", modes: all, mutate: del("type"), attr: "type"},
		{name: "EmptyType", modes: all, mutate: set("type", ""), attr: "type"},
		{name: "NullType", modes: json, mutate: set("type", nil), attr: "type"},
		{name: "MissingSpecversion", modes: all, mutate: del("specversion"), attr: "specversion"},
		{name: "EmptySpecversion", modes: all, mutate: set("specversion", ""), attr: "specversion"},
		{name: "Specversion03", modes: all, mutate: set("specversion", "0.3"), attr: "specversion"},
		{name: "Specversion20", modes: all, mutate: set("specversion", "2.0"), attr: "specversion"},
		{name: "NumericSpecversion", modes: json, mutate: set("specversion", 1.0), attr: "specversion"},
		{name: "TimeNotRFC3339", modes: all, mutate: set("time", "yesterday"), attr: "time"},
		{name: "TimeWithoutOffset", modes: all, mutate: set("time", "2018-04-05T03:56:24"), attr: "time"},
		{name: "TimeWithSpace", modes: all, mutate: set("time", "2018-04-05 03:56:24Z"), attr: "time"},
		{name: "TimeOutOfRange", modes: all, mutate: set("time", "2018-13-05T03:56:24Z"), attr: "time"},
		{name: "TimeNumber", modes: json, mutate: set("time", 1522900584), attr: "time"},
		{name: "RelativeDataschema", modes: all, mutate: set("dataschema", "/schemas/tested.json"), attr: "dataschema"},
		{name: "BareDataschema", modes: all, mutate: set("dataschema", "tested.json"), attr: "dataschema"},
		{name: "DatacontenttypeNotAMediaType", modes: all, mutate: set("datacontenttype", "not a media type"), attr: "datacontenttype", binLoc: "header.Content-Type"},
		{name: "DatacontenttypeWithoutSubtype", modes: all, mutate: set("datacontenttype", "application/"), attr: "datacontenttype", binLoc: "header.Content-Type"},
		{name: "EmptySubject", modes: all, mutate: set("subject", ""), attr: "subject"},
		{name: "ExtensionNameUppercase", modes: json, mutate: set("myExt", "v"), attr: "myExt"},
		{name: "ExtensionNameDash", modes: all, mutate: set("my-ext", "v"), attr: "my-ext"},
		{name: "ExtensionNameUnderscore", modes: all, mutate: set("my_ext", "v"), attr: "my_ext"},
		{name: "ExtensionValueObject", modes: json, mutate: set("myext", map[string]any{"a": 1}), attr: "myext"},
		{name: "ExtensionValueArray", modes: json, mutate: set("myext", []any{1, 2}), attr: "myext"},
		{name: "ExtensionValueFloat", modes: json, mutate: set("myext", 1.5), attr: "myext"},
		{name: "ExtensionValueAboveInt32", modes: json, mutate: set("myext", int64(1)<<31), attr: "myext"},
		{name: "ExtensionValueBelowInt32", modes: json, mutate: set("myext", -(int64(1)<<31)-1), attr: "myext"},
		{name: "ExtensionValueControlChar", modes: json, mutate: set("myext", "a\x01b"), attr: "myext"},
		{name: "ReservedExtensionFossilstream", modes: all, mutate: set("fossilstream", "elsewhere"), attr: "fossilstream"},
		{name: "ReservedExtensionFossileventnumber", modes: all, mutate: set("fossileventnumber", 7), attr: "fossileventnumber"},
		{name: "ReservedExtensionFossilexpectack", modes: all, mutate: set("fossilexpectack", "c1"), attr: "fossilexpectack"},
		{name: "DataAndDataBase64", modes: json, mutate: set("data_base64", "aGk="), attr: "data_base64"},
		{name: "DataBase64NotBase64", modes: json, mutate: func(a attrs) { delete(a, "data"); a["data_base64"] = "!!!" }, attr: "data_base64"},
		{name: "DataBase64NotJSON", modes: json, mutate: func(a attrs) { delete(a, "data"); a["data_base64"] = "bm90IGpzb24=" }, attr: "data_base64"},
		{name: "TextDataNotAString", modes: json, mutate: set("datacontenttype", "text/plain"), attr: "data"},
	}
	b := setup(t)
	t.Cleanup(func() { b.requireEmpty(t) })
	for _, tt := range tests {
		for _, m := range tt.modes {
			t.Run(tt.name+"/"+string(m), func(t *testing.T) {
				t.Parallel()
				bad := newAttrs("bad")
				tt.mutate(bad)
				var h http.Header
				var body []byte
				loc := ""
				switch m {
				case binary:
					h, body = encode(t, m, "s", bad)
					loc = "header.ce-" + tt.attr
					if tt.binLoc != "" {
						loc = tt.binLoc
					}
				case structured:
					h, body = encode(t, m, "s", bad)
					loc = "body." + tt.attr
				case batch:
					h, body = encode(t, m, "s", newAttrs("ok-0"), newAttrs("ok-1"), bad)
					loc = "body[2]." + tt.attr
				}
				requireInvalid(t, b.post(t, h, body), loc)
				b.requireEmpty(t)
			})
		}
	}
}

// TestCollectRejectsInvalidBodies covers failures of the body as a whole:
// malformed JSON, wrong JSON shapes, empty batches and data that does not
// match its JSON datacontenttype.
func TestCollectRejectsInvalidBodies(t *testing.T) {
	t.Parallel()

	valid := func(id string) string {
		_, b := encode(t, structured, "s", newAttrs(id))
		return string(b)
	}
	binaryHeader := func(contentType string) http.Header {
		h, _ := encode(t, binary, "s", newAttrs("bin"))
		h["Content-Type"] = []string{contentType}
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		loc    string
	}{
		{name: "StructuredMalformedJSON", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: `{"specversion":"1.0","id":`, loc: "body"},
		{name: "StructuredTrailingGarbage", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: valid("a") + `}`, loc: "body"},
		{name: "StructuredEmptyBody", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: ``, loc: "body"},
		{name: "StructuredArray", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: `[` + valid("a") + `]`, loc: "body"},
		{name: "StructuredString", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: `"event"`, loc: "body"},
		{name: "BatchMalformedJSON", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: `[` + valid("a") + `,`, loc: "body"},
		{name: "BatchEmpty", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: `[]`, loc: "body"},
		{name: "BatchEmptyBody", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: ``, loc: "body"},
		{name: "BatchObject", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: valid("a"), loc: "body"},
		{name: "BatchMemberNotAnObject", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: `[` + valid("a") + `,` + valid("b") + `,42]`, loc: "body[2]"},
		{name: "BatchMemberNull", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: `[` + valid("a") + `,` + valid("b") + `,null]`, loc: "body[2]"},
		{name: "BatchSameEventTwice", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: `[` + valid("a") + `,` + valid("b") + `,` + valid("a") + `]`, loc: "body[2].id"},
		{name: "BatchOverTenThousand", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: minimalBatch(10001), loc: "body"},
		{name: "BinaryCeDataHeader", header: withHeader(binaryHeader("application/json"), "ce-data", "x"), body: `{"a":1}`, loc: "header.ce-data"},
		{name: "BinaryCeDataBase64Header", header: withHeader(binaryHeader("application/json"), "ce-data_base64", "AAAA"), body: `{"a":1}`, loc: "header.ce-data_base64"},
		{name: "BinaryCeDatacontenttypeHeader", header: withHeader(hdr("Fossil-Stream", "s", "ce-specversion", "1.0", "ce-id", "a", "ce-source", "/s", "ce-type", "t"), "ce-datacontenttype", "text/plain"), body: `hi`, loc: "header.ce-datacontenttype"},
		{name: "BinaryJSONNotJSON", header: binaryHeader("application/json"), body: `{"unterminated":`, loc: "body"},
		{name: "BinaryJSONCharsetNotJSON", header: binaryHeader("application/json; charset=utf-8"), body: `hello`, loc: "body"},
		{name: "BinaryPlusJSONNotJSON", header: binaryHeader("application/vnd.example+json"), body: `<xml/>`, loc: "body"},
		{name: "BinaryTextJSONNotJSON", header: binaryHeader("text/json"), body: `not json`, loc: "body"},
		{name: "StructuredDataInvalidUTF8", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: `{"specversion":"1.0","id":"0","source":"0","type":"0","data":{"` + "\xe1" + `":0}}`, loc: "body"},
		{name: "StructuredDataStringInvalidUTF8", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: `{"specversion":"1.0","id":"0","source":"0","type":"0","data":"` + "\xff" + `"}`, loc: "body"},
		{name: "BatchMemberInvalidUTF8", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: `[` + valid("a") + `,{"specversion":"1.0","id":"0","source":"0","type":"0","data":["` + "\xc3" + `"]}]`, loc: "body"},
		{name: "BinaryJSONInvalidUTF8", header: binaryHeader("application/json"), body: `{"a":"` + "\xe2\x82" + `"}`, loc: "body"},
	}
	b := setup(t)
	t.Cleanup(func() { b.requireEmpty(t) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			requireInvalid(t, b.post(t, tt.header, []byte(tt.body)), tt.loc)
			b.requireEmpty(t)
		})
	}
}

// TestCollectRejectsInvalidFossilHeaders covers Fossil-Stream,
// Fossil-Expected-Sequence-Number and Fossil-Replace.
func TestCollectRejectsInvalidFossilHeaders(t *testing.T) {
	t.Parallel()

	const (
		stream   = "header.Fossil-Stream"
		expected = "header.Fossil-Expected-Sequence-Number"
		replace  = "header.Fossil-Replace"
	)
	tests := []struct {
		name  string
		modes []mode
		kv    []string // header name/value pairs added to a valid event without Fossil-Stream
		loc   string
	}{
		{name: "MissingStream", modes: []mode{binary, structured, batch}, loc: stream},
		{name: "EmptyStream", kv: []string{"Fossil-Stream", ""}, loc: stream},
		{name: "StreamTwice", kv: []string{"Fossil-Stream", "a", "Fossil-Stream", "b"}, loc: stream},
		{name: "StreamLeadingSlash", modes: []mode{binary, structured, batch}, kv: []string{"Fossil-Stream", "/visits/1"}, loc: stream},
		{name: "StreamTrailingSlash", kv: []string{"Fossil-Stream", "visits/1/"}, loc: stream},
		{name: "StreamOnlySlash", kv: []string{"Fossil-Stream", "/"}, loc: stream},
		{name: "StreamTab", kv: []string{"Fossil-Stream", "visits\t1"}, loc: stream},
		{name: "StreamC1Control", kv: []string{"Fossil-Stream", "visits\u00851"}, loc: stream},
		{name: "StreamTooLong", modes: []mode{binary, structured, batch}, kv: []string{"Fossil-Stream", strings.Repeat("s", 256)}, loc: stream},
		{name: "StreamTooLongMultibyte", kv: []string{"Fossil-Stream", strings.Repeat("€", 86)}, loc: stream}, // 258 bytes, 86 runes
		{name: "StreamInvalidUTF8", kv: []string{"Fossil-Stream", "visits\xff1"}, loc: stream},
		{name: "StreamTruncatedUTF8", kv: []string{"Fossil-Stream", "visits\xe2\x82"}, loc: stream},
		{name: "ExpectedZero", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "0"}, loc: expected},
		{name: "ExpectedNegative", modes: []mode{binary, structured, batch}, kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "-1"}, loc: expected},
		{name: "ExpectedNotANumber", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "abc"}, loc: expected},
		{name: "ExpectedFraction", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "1.5"}, loc: expected},
		{name: "ExpectedPlusSign", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "+1"}, loc: expected},
		{name: "ExpectedEmpty", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", ""}, loc: expected},
		{name: "ExpectedOverflow", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "99999999999999999999"}, loc: expected},
		{name: "ExpectedTwice", kv: []string{"Fossil-Stream", "s", "Fossil-Expected-Sequence-Number", "1", "Fossil-Expected-Sequence-Number", "1"}, loc: expected},
		{name: "ReplaceYes", modes: []mode{binary, structured, batch}, kv: []string{"Fossil-Stream", "s", "Fossil-Replace", "yes"}, loc: replace},
		{name: "ReplaceOne", kv: []string{"Fossil-Stream", "s", "Fossil-Replace", "1"}, loc: replace},
		{name: "ReplaceBogus", kv: []string{"Fossil-Stream", "s", "Fossil-Replace", "bogus"}, loc: replace},
		{name: "ReplaceWithExpected", kv: []string{"Fossil-Stream", "s", "Fossil-Replace", "true", "Fossil-Expected-Sequence-Number", "1"}, loc: expected},
	}
	b := setup(t)
	t.Cleanup(func() { b.requireEmpty(t) })
	for _, tt := range tests {
		modes := tt.modes
		if modes == nil {
			modes = []mode{binary}
		}
		for _, m := range modes {
			t.Run(tt.name+"/"+string(m), func(t *testing.T) {
				t.Parallel()
				evs := []attrs{newAttrs("x")}
				if m == batch {
					evs = append(evs, newAttrs("y"))
				}
				h, body := encode(t, m, "", evs...)
				for i := 0; i+1 < len(tt.kv); i += 2 {
					h[tt.kv[i]] = append(h[tt.kv[i]], tt.kv[i+1])
				}
				requireInvalid(t, b.post(t, h, body), tt.loc)
				b.requireEmpty(t)
			})
		}
	}
}

// TestCollectRejectsNonCloudEvents: 415 for requests that are not
// CloudEvents in a supported format, 413 for bodies over the limit.
func TestCollectRejectsNonCloudEvents(t *testing.T) {
	t.Parallel()

	bigJSON := func(n int) string { return `{"pad":"` + strings.Repeat("x", n) + `"}` }
	bigStructured := func() string {
		a := newAttrs("big")
		a["data"] = map[string]any{"pad": strings.Repeat("x", 1<<20)}
		_, body := encode(t, structured, "s", a)
		return string(body)
	}
	binaryHeader := func() http.Header {
		h, _ := encode(t, binary, "s", newAttrs("bin"))
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		status int
	}{
		{name: "PlainText", header: hdr("Fossil-Stream", "s", "Content-Type", "text/plain"), body: "hello", status: http.StatusUnsupportedMediaType},
		{name: "PlainJSON", header: hdr("Fossil-Stream", "s", "Content-Type", "application/json"), body: `{"id":"1"}`, status: http.StatusUnsupportedMediaType},
		{name: "NoContentTypeNoCEHeaders", header: hdr("Fossil-Stream", "s"), body: "hello", status: http.StatusUnsupportedMediaType},
		{name: "NoContentTypeNoBody", header: hdr("Fossil-Stream", "s"), body: "", status: http.StatusUnsupportedMediaType},
		{name: "CloudEventsXML", header: hdr("Fossil-Stream", "s", "Content-Type", "application/cloudevents+xml"), body: "<event/>", status: http.StatusUnsupportedMediaType},
		{name: "CloudEventsXMLWithCEHeaders", header: func() http.Header {
			h := binaryHeader()
			h["Content-Type"] = []string{"application/cloudevents+xml"}
			return h
		}(), body: "<event/>", status: http.StatusUnsupportedMediaType},
		{name: "CloudEventsProtobuf", header: hdr("Fossil-Stream", "s", "Content-Type", "application/cloudevents+protobuf"), body: "\x0a\x01x", status: http.StatusUnsupportedMediaType},
		{name: "CloudEventsBatchXML", header: hdr("Fossil-Stream", "s", "Content-Type", "application/cloudevents-batch+xml"), body: "<events/>", status: http.StatusUnsupportedMediaType},
		{name: "BinaryTooLarge", header: binaryHeader(), body: bigJSON(1 << 20), status: http.StatusRequestEntityTooLarge},
		{name: "StructuredTooLarge", header: hdr("Fossil-Stream", "s", "Content-Type", ctStructured), body: bigStructured(), status: http.StatusRequestEntityTooLarge},
		{name: "BatchTooLarge", header: hdr("Fossil-Stream", "s", "Content-Type", ctBatch), body: "[" + bigStructured() + "]", status: http.StatusRequestEntityTooLarge},
		{name: "FarOverTheLimit", header: binaryHeader(), body: bigJSON(8 << 20), status: http.StatusRequestEntityTooLarge},
		{name: "OneByteOverTheLimit", header: hdr("Fossil-Stream", "s", "Content-Type", "text/plain", "ce-specversion", "1.0", "ce-id", "a", "ce-source", "/s", "ce-type", "t"), body: strings.Repeat("x", 1<<20+1), status: http.StatusRequestEntityTooLarge},
	}
	b := setup(t)
	t.Cleanup(func() { b.requireEmpty(t) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := requireProblem(t, b.post(t, tt.header, []byte(tt.body)), tt.status)
			want := map[int]string{
				http.StatusUnsupportedMediaType:  problem.TypeURI("unsupported-media-type"),
				http.StatusRequestEntityTooLarge: problem.TypeURI("too-large"),
			}[tt.status]
			if p.Type != want {
				t.Errorf("type = %q, want %q", p.Type, want)
			}
			b.requireEmpty(t)
		})
	}
}

// TestCollectAcceptsEdgeCases: what must be accepted — large events, odd
// but valid content types, boundary values.
func TestCollectAcceptsEdgeCases(t *testing.T) {
	t.Parallel()

	big := strings.Repeat("0123456789abcdef", 64<<10/16) // 64 KiB of data
	tests := []struct {
		name   string
		header func(t *testing.T) (http.Header, []byte)
		check  func(t *testing.T, e storedEvent)
	}{
		{name: "Binary64KiBText", header: func(t *testing.T) (http.Header, []byte) {
			a := newAttrs("big-bin")
			a["datacontenttype"], a["data"] = "text/plain", big
			return encode(t, binary, "s", a)
		}, check: func(t *testing.T, e storedEvent) {
			if e.Doc["data"] != big {
				t.Errorf("data is not the 64 KiB text")
			}
		}},
		{name: "Binary64KiBOctets", header: func(t *testing.T) (http.Header, []byte) {
			h := hdr("Fossil-Stream", "s", "ce-specversion", "1.0", "ce-id", "big-oct", "ce-source", "/s", "ce-type", "t", "Content-Type", "application/octet-stream")
			return h, bytes.Repeat([]byte{0, 0xff, 0x10, 0x80}, 64<<10/4+1)
		}, check: func(t *testing.T, e storedEvent) {
			if s, _ := e.Doc["data_base64"].(string); len(s) < 64<<10 {
				t.Errorf("data_base64 has %d characters", len(s))
			}
		}},
		{name: "Structured64KiB", header: func(t *testing.T) (http.Header, []byte) {
			a := newAttrs("big-str")
			a["data"] = map[string]any{"pad": big}
			return encode(t, structured, "s", a)
		}},
		{name: "Batch64KiBEach", header: func(t *testing.T) (http.Header, []byte) {
			a, c := newAttrs("big-b1"), newAttrs("big-b2")
			a["data"] = map[string]any{"pad": big}
			c["data"] = map[string]any{"pad": big}
			return encode(t, batch, "s", a, c)
		}},
		{name: "Batch10000", header: func(t *testing.T) (http.Header, []byte) {
			return hdr("Fossil-Stream", "s", "Content-Type", ctBatch), []byte(minimalBatch(10000))
		}},
		{name: "Almost1MiB", header: func(t *testing.T) (http.Header, []byte) {
			h := hdr("Fossil-Stream", "s", "ce-specversion", "1.0", "ce-id", "1mib", "ce-source", "/s", "ce-type", "t", "Content-Type", "text/plain")
			return h, bytes.Repeat([]byte("x"), 1<<20)
		}},
		{name: "StructuredOddCaseAndCharset", header: func(t *testing.T) (http.Header, []byte) {
			h, body := encode(t, structured, "s", newAttrs("odd"))
			h.Set("Content-Type", "Application/CloudEvents+JSON; charset=UTF-8")
			return h, body
		}},
		{name: "StructuredUpperCase", header: func(t *testing.T) (http.Header, []byte) {
			h, body := encode(t, structured, "s", newAttrs("upper"))
			h.Set("Content-Type", "APPLICATION/CLOUDEVENTS+JSON")
			return h, body
		}},
		{name: "BatchOddCaseAndCharset", header: func(t *testing.T) (http.Header, []byte) {
			h, body := encode(t, batch, "s", newAttrs("odd-b"))
			h.Set("Content-Type", "application/CloudEvents-Batch+Json ; charset=\"utf-8\"")
			return h, body
		}},
		{name: "Stream255Bytes", header: func(t *testing.T) (http.Header, []byte) {
			h, body := encode(t, binary, strings.Repeat("s", 255), newAttrs("s255"))
			return h, body
		}, check: func(t *testing.T, e storedEvent) {
			if len(e.Stream) != 255 {
				t.Errorf("stream has %d bytes", len(e.Stream))
			}
		}},
		{name: "StreamUnicode", header: func(t *testing.T) (http.Header, []byte) {
			return encode(t, binary, "visits/€/😀", newAttrs("unicode"))
		}, check: func(t *testing.T, e storedEvent) {
			if e.Stream != "visits/€/😀" {
				t.Errorf("stream = %q", e.Stream)
			}
		}},
		{name: "Int32Bounds", header: func(t *testing.T) (http.Header, []byte) {
			a := newAttrs("int32")
			a["maxext"], a["minext"], a["boolext"] = int64(1)<<31-1, -(int64(1) << 31), true
			return encode(t, structured, "s", a)
		}, check: func(t *testing.T, e storedEvent) {
			if fmt.Sprint(e.Doc["maxext"]) != "2147483647" || fmt.Sprint(e.Doc["minext"]) != "-2147483648" || e.Doc["boolext"] != true {
				t.Errorf("extensions = %v %v %v", e.Doc["maxext"], e.Doc["minext"], e.Doc["boolext"])
			}
		}},
		{name: "NullOptionalAttributes", header: func(t *testing.T) (http.Header, []byte) {
			a := newAttrs("nulls")
			a["subject"], a["time"], a["myext"] = nil, nil, nil
			return encode(t, structured, "s", a)
		}, check: func(t *testing.T, e storedEvent) {
			for _, k := range []string{"subject", "time", "myext"} {
				if _, ok := e.Doc[k]; ok {
					t.Errorf("null %s is stored: %s", k, e.RawDoc)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			h, body := tt.header(t)
			pos := requireOK(t, b.post(t, h, body), false)
			stored := b.events(t)
			if len(stored) != len(pos) {
				t.Fatalf("%d events stored, %d positions returned", len(stored), len(pos))
			}
			if tt.check != nil {
				tt.check(t, stored[0])
			}
		})
	}
}

// withHeader returns h with one more header value.
func withHeader(h http.Header, name, value string) http.Header {
	h = h.Clone()
	h[name] = append(h[name], value)
	return h
}

// minimalBatch returns a batch of n small events with distinct ids.
func minimalBatch(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"%d","source":"/","type":"t"}`, i)
	}
	b.WriteByte(']')
	return b.String()
}
