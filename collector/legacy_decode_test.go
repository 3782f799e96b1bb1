package collector

// The decoder as it was before the one-pass scanner, kept to check that the
// current one stores the same documents and fails on the same inputs.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

// Media types of the structured and batched content modes.
const (
	legacyMediaStructured = "application/cloudevents+json"
	legacyMediaBatch      = "application/cloudevents-batch+json"
)

// legacyMaxBatchEvents bounds the members of one batch.
const legacyMaxBatchEvents = 10000

// legacyDecoded is one event parsed from a request, ready to store.
type legacyDecoded struct {
	Event    *fossil.Event
	Location string // "body", "header" or "body[i]", for error messages
	DataKind fossil.DataKind
	Data     []byte // the data as it is stored: compact JSON, text or binary
	// DataContentType is the event's datacontenttype ("" when absent).
	DataContentType string
}

// legacyDecode parses the CloudEvents in r in any content mode. The body must be
// limited by the caller (http.MaxBytesReader). Errors are
// [*fossil.InvalidError] (400), [fossil.ErrUnsupportedMediaType] (415) or an
// [*http.MaxBytesError] (413).
//
// sdk-go parses the attributes. legacyDecode adds what sdk-go leaves out: it
// percent-decodes ce-* header values, rejects data together with
// data_base64, validates every member of a batch, rejects reserved fossil*
// extensions, and takes the data itself so that any JSON media type (also
// */*+json) keeps its JSON value.
func legacyDecode(r *http.Request) ([]*legacyDecoded, error) {
	mediaType := legacyMediaTypeOf(r.Header.Get("Content-Type"))
	switch {
	case mediaType == legacyMediaStructured:
		body, err := legacyReadBody(r)
		if err != nil {
			return nil, err
		}
		d, err := legacyDecodeStructured("body", body)
		if err != nil {
			return nil, err
		}
		return []*legacyDecoded{d}, nil
	case mediaType == legacyMediaBatch:
		body, err := legacyReadBody(r)
		if err != nil {
			return nil, err
		}
		return legacyDecodeBatch(body)
	case strings.HasPrefix(mediaType, "application/cloudevents"):
		return nil, fmt.Errorf("%w: event format %q is not supported; use %s, %s or binary mode", fossil.ErrUnsupportedMediaType, mediaType, legacyMediaStructured, legacyMediaBatch)
	case legacyHasCEHeaders(r.Header):
		d, err := legacyDecodeBinary(r)
		if err != nil {
			return nil, err
		}
		return []*legacyDecoded{d}, nil
	default:
		return nil, fmt.Errorf("%w: the request has no ce-* headers and its Content-Type %q is neither %s nor %s", fossil.ErrUnsupportedMediaType, r.Header.Get("Content-Type"), legacyMediaStructured, legacyMediaBatch)
	}
}

func legacyReadBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	// Reserve only what has arrived, in steps: a client that claims a
	// large Content-Length and then sends slowly must not make the server
	// hold memory it has not been sent. The caller has already refused a
	// Content-Length above the body limit (see [legacyCheckContentLength]), and
	// r.Body stops at that limit.
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 {
		buf.Grow(int(min(n, legacyInitialBodyBuffer)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(r.Body)
	body := buf.Bytes()
	if err != nil {
		return nil, problem.BodyError(err)
	}
	return body, nil
}

// legacyInitialBodyBuffer is the most legacyReadBody reserves before bytes arrive.
const legacyInitialBodyBuffer = 64 << 10

// legacyCheckContentLength refuses, before any byte of the body is read, a
// request whose Content-Length exceeds limit: the error is the
// [*http.MaxBytesError] that reading would have returned (413).
func legacyCheckContentLength(r *http.Request, limit int64) error {
	if r.ContentLength > limit {
		return &http.MaxBytesError{Limit: limit}
	}
	return nil
}

func legacyHasCEHeaders(h http.Header) bool {
	for k := range h {
		if len(k) > 3 && strings.EqualFold(k[:3], "ce-") {
			return true
		}
	}
	return false
}

// legacyAttr is one context attribute as received: a JSON value in structured
// mode, a decoded header value in binary mode.
type legacyAttr struct {
	raw   json.RawMessage // structured mode
	str   string          // binary mode, or the decoded JSON string
	isStr bool
}

// legacyDecodeBinary handles binary mode: attributes in ce-* headers, the body is
// the data.
func legacyDecodeBinary(r *http.Request) (*legacyDecoded, error) {
	const loc = "header"
	attrs := map[string]legacyAttr{}
	decoded := http.Header{}
	for k, vs := range r.Header {
		if len(k) <= 3 || !strings.EqualFold(k[:3], "ce-") {
			continue
		}
		name := strings.ToLower(k[3:])
		hloc := "header.ce-" + name
		switch name {
		case "data", "data_base64", "datacontenttype":
			// Not context attributes: in binary mode the data is the body
			// and its type the Content-Type header. A ce-data extension
			// would also clash with the document's data member.
			return nil, fossil.Invalid(hloc, "%q cannot be sent as a ce- header: in binary mode the data is the body and datacontenttype is the Content-Type header", name)
		}
		if len(vs) != 1 {
			return nil, fossil.Invalid(hloc, "attribute %q is sent %d times", name, len(vs))
		}
		v, err := legacyPercentDecode(vs[0])
		if err != nil {
			return nil, fossil.Invalid(hloc, "%s", err.Error())
		}
		attrs[name] = legacyAttr{str: v, isStr: true}
		decoded.Set(k, v)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		attrs["datacontenttype"] = legacyAttr{str: ct, isStr: true}
		decoded.Set("Content-Type", ct)
	}
	if err := legacyCheckAttributes(loc, attrs, true); err != nil {
		return nil, err
	}
	body, err := legacyReadBody(r)
	if err != nil {
		return nil, err
	}
	req := &http.Request{Header: decoded, Body: io.NopCloser(bytes.NewReader(body))}
	ev, err := cehttp.NewEventFromHTTPRequest(req)
	if err != nil {
		return nil, fossil.Invalid(loc, "not a valid CloudEvent: %s", err.Error())
	}
	d := &legacyDecoded{Location: loc, DataContentType: ev.DataContentType()}
	if len(body) > 0 {
		kind, data, err := legacyClassifyData("body", ev.DataContentType(), body) // the data is the body
		if err != nil {
			return nil, err
		}
		d.DataKind, d.Data = kind, data
	}
	return legacyFinish(d, ev, attrs)
}

// legacyClassifyData decides how binary-mode data is kept: JSON media types must
// carry valid JSON (stored compact), text is kept as a string, anything else
// as bytes. Without a media type, valid JSON is JSON and the rest is bytes.
func legacyClassifyData(loc, contentType string, body []byte) (fossil.DataKind, []byte, error) {
	switch {
	case legacyIsJSONMedia(contentType):
		data, err := legacyCompactJSON(body)
		if err != nil {
			return 0, nil, fossil.Invalid(loc, "datacontenttype %q says JSON but the data is not valid JSON: %s", contentType, err.Error())
		}
		return fossil.DataJSON, data, nil
	case contentType == "" && legacyValidJSON(body):
		return fossil.DataJSON, legacyCompactValid(body), nil
	case legacyIsTextMedia(contentType) && utf8.Valid(body):
		return fossil.DataString, body, nil
	default:
		return fossil.DataBase64, body, nil
	}
}

// legacyCompactJSON validates JSON (UTF-8 included) and returns it without
// insignificant whitespace.
func legacyCompactJSON(b []byte) ([]byte, error) {
	if !legacyValidJSON(b) {
		return nil, errors.New(legacyMalformed(b))
	}
	return legacyCompactValid(b), nil
}

// legacyCompactValid returns the valid JSON b without insignificant whitespace:
// b itself when it has none, which is how clients usually send JSON. The
// scan for white space outside strings is a plain loop, several times
// cheaper than json.Compact's state machine, which only runs when there is
// something to remove.
func legacyCompactValid(b []byte) []byte {
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++ // the escaped byte cannot end the string
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			var buf bytes.Buffer
			buf.Grow(len(b))
			_ = json.Compact(&buf, b) // b is valid
			return buf.Bytes()
		}
	}
	return b
}

// legacySdkKnowsJSON reports whether sdk-go treats a datacontenttype as JSON
// when it reads structured data itself.
func legacySdkKnowsJSON(contentType string) bool {
	switch legacyMediaTypeOf(contentType) {
	case "", "application/json", "text/json":
		return true
	}
	return false
}

// legacyMediaTypeOf returns the lower-cased type/subtype of a media type that
// legacyCheckAttributes has already validated: the text before any parameters.
func legacyMediaTypeOf(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	for i := 0; i < len(mt); i++ {
		if c := mt[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(mt)
		}
	}
	return mt
}

// legacyIsJSONMedia reports whether a datacontenttype is JSON: application/json,
// text/json or any */*+json. An absent type is not JSON here; callers decide.
func legacyIsJSONMedia(contentType string) bool {
	mt := legacyMediaTypeOf(contentType)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func legacyIsTextMedia(contentType string) bool {
	mt := legacyMediaTypeOf(contentType)
	return strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml") ||
		mt == "application/x-www-form-urlencoded" || mt == "application/javascript" || mt == "application/yaml"
}

// legacyDecodeStructured handles one structured-mode event (also a batch member).
func legacyDecodeStructured(loc string, body []byte) (*legacyDecoded, error) {
	body = bytes.TrimSpace(body)
	if !legacyValidJSON(body) {
		if len(body) == 0 || body[0] != '{' {
			return nil, fossil.Invalid(loc, "malformed JSON: the body must be a CloudEvent JSON object")
		}
		return nil, fossil.Invalid(loc, "malformed JSON: %s", legacyMalformed(body))
	}
	return legacyDecodeObject(loc, body)
}

// legacyDecodeObject decodes one structured event from valid JSON.
func legacyDecodeObject(loc string, body []byte) (*legacyDecoded, error) {
	if len(body) == 0 || body[0] != '{' {
		return nil, fossil.Invalid(loc, "a structured CloudEvent must be a JSON object")
	}
	members, err := legacySplitObject(body)
	if err != nil {
		return nil, fossil.Invalid(loc, "malformed JSON: %s", err.Error())
	}
	attrs := make(map[string]legacyAttr, len(members))
	hasNull := false
	for name, raw := range members {
		a := legacyAttr{raw: raw}
		switch {
		case len(raw) > 1 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0:
			// No escapes: the text between the quotes is the string (the
			// document was validated by the Unmarshal above).
			a.str, a.isStr = string(raw[1:len(raw)-1]), true
		case len(raw) > 0 && raw[0] == '"':
			if err := json.Unmarshal(raw, &a.str); err != nil {
				return nil, fossil.Invalid(loc+"."+name, "malformed JSON string: %s", err.Error())
			}
			a.isStr = true
		case string(raw) == "null":
			hasNull = true
		}
		attrs[name] = a
	}
	if err := legacyCheckAttributes(loc, attrs, false); err != nil {
		return nil, err
	}
	// legacyDecode data_base64 first, so a bad one is reported as such.
	var b64 []byte
	if a, ok := attrs["data_base64"]; ok && a.isStr {
		var err error
		if b64, err = base64.StdEncoding.DecodeString(a.str); err != nil {
			return nil, fossil.Invalid(loc+".data_base64", "data_base64 is not valid base64: %s", err.Error())
		}
	}
	// sdk-go parses the attributes; the data is taken here (see legacyDecode).
	// sdk-go can read the document as it is unless a member is null or the
	// data is JSON of a media type it does not know as JSON (*/*+json);
	// only then is a copy without the data made for it.
	doc := body
	if a, ok := attrs["datacontenttype"]; hasNull || (ok && !legacySdkKnowsJSON(a.str) && attrs["data"].raw != nil) {
		delete(members, "data")
		delete(members, "data_base64")
		for name, raw := range members {
			if string(raw) == "null" {
				delete(members, name)
			}
		}
		var err error
		if doc, err = json.Marshal(members); err != nil {
			return nil, fossil.Invalid(loc, "malformed JSON: %s", err.Error())
		}
	}
	ev := event.New()
	if err := ev.UnmarshalJSON(doc); err != nil {
		return nil, fossil.Invalid(loc, "not a valid CloudEvent: %s", err.Error())
	}
	d := &legacyDecoded{Location: loc, DataContentType: ev.DataContentType()}
	if a, ok := attrs["data_base64"]; ok && string(a.raw) != "null" {
		data := b64
		if legacyIsJSONMedia(d.DataContentType) && !legacyValidJSON(data) {
			return nil, fossil.Invalid(loc+".data_base64", "datacontenttype %q says JSON but the decoded data is not valid JSON", d.DataContentType)
		}
		d.DataKind, d.Data = fossil.DataBase64, data
	} else if a, ok := attrs["data"]; ok && string(a.raw) != "null" {
		ct := d.DataContentType
		switch {
		case ct == "" || legacyIsJSONMedia(ct):
			// The whole body was validated, a.raw with it.
			d.DataKind, d.Data = fossil.DataJSON, legacyCompactValid(a.raw)
		case a.isStr:
			d.DataKind, d.Data = fossil.DataString, []byte(a.str)
		default:
			return nil, fossil.Invalid(loc+".data", "datacontenttype %q is not JSON, so data must be a JSON string (or use data_base64)", ct)
		}
	}
	return legacyFinish(d, &ev, attrs)
}

// legacyDecodeBatch handles batched mode: a JSON array of structured events.
func legacyDecodeBatch(body []byte) ([]*legacyDecoded, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '[' {
		if !legacyValidJSON(body) {
			return nil, fossil.Invalid("body", "malformed JSON: a batch must be a JSON array of CloudEvents")
		}
		return nil, fossil.Invalid("body", "a batch must be a JSON array of CloudEvents")
	}
	if !legacyValidJSON(body) {
		return nil, fossil.Invalid("body", "malformed JSON: %s", legacyMalformed(body))
	}
	members := legacySplitArray(body)
	switch {
	case len(members) == 0:
		return nil, fossil.Invalid("body", "the batch is empty")
	case len(members) > legacyMaxBatchEvents:
		return nil, fossil.Invalid("body", "the batch holds %d events; at most %d are allowed", len(members), legacyMaxBatchEvents)
	}
	out := make([]*legacyDecoded, len(members))
	for i, m := range members {
		d, err := legacyDecodeObject(fmt.Sprintf("body[%d]", i), m)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// legacyFinish builds the stored form of a decoded event. source and dataschema
// are kept as received (see [fossil.EncodeDocVerbatim]); sdk-go has checked
// that they parse.
func legacyFinish(d *legacyDecoded, ev *event.Event, attrs map[string]legacyAttr) (*legacyDecoded, error) {
	source, dataschema := attrs["source"].str, ""
	if a := attrs["dataschema"]; a.isStr {
		dataschema = a.str
	}
	d.Event = &fossil.Event{
		ID:      ev.ID(),
		Source:  source,
		Type:    ev.Type(),
		Subject: ev.Subject(),
		Time:    ev.Time(),
		Doc:     fossil.EncodeDocVerbatim(ev, source, dataschema, d.DataKind, d.Data),
	}
	return d, nil
}

// legacyCheckAttributes validates context attributes as received, naming the
// offending attribute. binary is true for ce-* headers, whose values are
// all strings.
func legacyCheckAttributes(loc string, attrs map[string]legacyAttr, binary bool) error {
	at := func(name string) string {
		if binary {
			if name == "datacontenttype" {
				return "header.Content-Type"
			}
			return "header.ce-" + name
		}
		return loc + "." + name
	}
	str := func(name string, required bool) (string, bool, error) {
		a, ok := attrs[name]
		if !ok || string(a.raw) == "null" {
			if required {
				return "", false, fossil.Invalid(at(name), "required attribute %q is missing", name)
			}
			return "", false, nil
		}
		if !a.isStr {
			return "", false, fossil.Invalid(at(name), "attribute %q must be a string", name)
		}
		if required && a.str == "" {
			return "", false, fossil.Invalid(at(name), "required attribute %q is empty", name)
		}
		if err := legacyCheckString(at(name), name, a.str); err != nil {
			return "", false, err
		}
		return a.str, true, nil
	}

	sv, _, err := str("specversion", true)
	if err != nil {
		return err
	}
	if sv != "1.0" {
		return fossil.Invalid(at("specversion"), "specversion %q is not supported; only 1.0 is", sv)
	}
	for _, name := range []string{"id", "source", "type"} {
		if _, _, err := str(name, true); err != nil {
			return err
		}
	}
	if _, err := url.Parse(attrs["source"].str); err != nil {
		return fossil.Invalid(at("source"), "source %q is not a URI-reference", attrs["source"].str)
	}
	if s, ok, err := str("subject", false); err != nil {
		return err
	} else if ok && s == "" {
		return fossil.Invalid(at("subject"), "subject must not be empty when present")
	}
	if s, ok, err := str("time", false); err != nil {
		return err
	} else if ok {
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fossil.Invalid(at("time"), "time %q is not an RFC 3339 timestamp", s)
		}
	}
	if s, ok, err := str("dataschema", false); err != nil {
		return err
	} else if ok {
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() {
			return fossil.Invalid(at("dataschema"), "dataschema %q must be an absolute URI", s)
		}
	}
	if s, ok, err := str("datacontenttype", false); err != nil {
		return err
	} else if ok {
		if _, _, err := mime.ParseMediaType(s); err != nil {
			return fossil.Invalid(at("datacontenttype"), "datacontenttype %q is not a valid media type: %s", s, err.Error())
		}
	}
	if !binary {
		d, hasData := attrs["data"]
		b, hasB64 := attrs["data_base64"]
		hasData = hasData && string(d.raw) != "null"
		hasB64 = hasB64 && string(b.raw) != "null"
		if hasData && hasB64 {
			return fossil.Invalid(loc+".data_base64", "an event must not carry both data and data_base64")
		}
		if hasB64 && !b.isStr {
			return fossil.Invalid(loc+".data_base64", "data_base64 must be a string")
		}
	}
	for name, a := range attrs {
		switch name {
		case "specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype", "data", "data_base64":
			continue
		}
		if err := legacyCheckExtension(at(name), name, a); err != nil {
			return err
		}
	}
	return nil
}

// legacyCheckExtension validates an extension attribute: a name of lowercase
// letters and digits that is not reserved, and a string, integer or boolean.
func legacyCheckExtension(loc, name string, a legacyAttr) error {
	if name == "" || len(name) > 64 {
		return fossil.Invalid(loc, "extension name %q must be 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fossil.Invalid(loc, "extension name %q may only contain lowercase letters a-z and digits", name)
		}
	}
	if strings.HasPrefix(name, fossil.ReservedPrefix) {
		return fossil.Invalid(loc, "extension %q is reserved: fossil* attributes are set by the server", name)
	}
	if a.isStr {
		return legacyCheckString(loc, name, a.str)
	}
	raw := string(a.raw)
	switch {
	case raw == "null", raw == "true", raw == "false":
		return nil
	case len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')):
		var n json.Number
		if err := json.Unmarshal(a.raw, &n); err != nil {
			return fossil.Invalid(loc, "extension %q is not a valid number", name)
		}
		i, err := n.Int64()
		if err != nil || i < -1<<31 || i > 1<<31-1 {
			return fossil.Invalid(loc, "extension %q must be a 32-bit integer, got %s", name, raw)
		}
		return nil
	default:
		return fossil.Invalid(loc, "extension %q must be a string, integer or boolean", name)
	}
}

// legacyCheckString rejects control characters, which CloudEvents forbids in
// string attributes.
func legacyCheckString(loc, name, s string) error {
	if !utf8.ValidString(s) {
		return fossil.Invalid(loc, "attribute %q is not valid UTF-8", name)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fossil.Invalid(loc, "attribute %q contains a control character", name)
	}
	return nil
}

// legacyPercentDecode decodes a ce-* header value as the CloudEvents HTTP binding
// requires: %XX sequences become bytes, a '%' that starts none is an error,
// and the result must be UTF-8.
func legacyPercentDecode(s string) (string, error) {
	out, ok := fossil.PercentDecode(s)
	if !ok {
		return "", errors.New("invalid percent-encoding: a '%' must start %XX with two hex digits")
	}
	if !utf8.ValidString(out) {
		return "", errors.New("percent-decoded value is not valid UTF-8")
	}
	return out, nil
}

// The structured and batched modes are decoded in two steps: one
// validation pass over the whole body (json.Valid), then the splitters
// below, which cut the already-valid document into array elements and
// object members without reflection. Decoding the body with
// json.Unmarshal into []json.RawMessage and then each member into a map
// scanned every byte several more times.

// legacyValidJSON reports whether b is one JSON value in UTF-8. json.Valid alone
// accepts invalid UTF-8 inside strings, which RFC 8259 (section 8.1)
// forbids and which PostgreSQL's jsonb refuses.
func legacyValidJSON(b []byte) bool {
	return json.Valid(b) && utf8.Valid(b)
}

// legacyMalformed explains why b is not valid JSON, with encoding/json's words.
func legacyMalformed(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err.Error()
	}
	if !utf8.Valid(b) {
		return "the JSON text is not valid UTF-8"
	}
	return "invalid JSON"
}

// legacySkipSpace returns the index of the first non-whitespace byte at or after i.
func legacySkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// legacyValueEnd returns the index just past the JSON value that starts at i in
// the valid document b.
func legacyValueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return legacyStringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = legacyStringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i
	}
}

// legacyStringEnd returns the index just past the string literal starting at i.
func legacyStringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// legacySplitArray returns the elements of the valid JSON array b.
func legacySplitArray(b []byte) [][]byte {
	var out [][]byte
	i := legacySkipSpace(b, 1)
	for i < len(b) && b[i] != ']' {
		end := legacyValueEnd(b, i)
		out = append(out, b[i:end])
		i = legacySkipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = legacySkipSpace(b, i+1)
		}
	}
	return out
}

// legacySplitObject returns the members of the valid JSON object b; like
// encoding/json, a repeated name keeps its last value.
func legacySplitObject(b []byte) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, 12)
	i := legacySkipSpace(b, 1)
	for i < len(b) && b[i] != '}' {
		kend := legacyStringEnd(b, i)
		key := b[i:kend]
		var name string
		if bytes.IndexByte(key, '\\') < 0 && utf8.Valid(key) {
			name = string(key[1 : len(key)-1])
		} else if err := json.Unmarshal(key, &name); err != nil {
			return nil, err
		}
		i = legacySkipSpace(b, kend)
		i = legacySkipSpace(b, i+1) // past ':'
		end := legacyValueEnd(b, i)
		out[name] = json.RawMessage(b[i:end])
		i = legacySkipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = legacySkipSpace(b, i+1)
		}
	}
	return out, nil
}

// FuzzDecodeSameAsLegacy feeds the inputs of FuzzDecode to both decoders:
// an event the previous decoder accepted must be stored with the same
// document and columns (or a retry of an event stored before would be a
// conflict), and both must refuse the same inputs with the same status and
// location and message, except where the previous answer came from sdk-go's
// parser rather than from the rules of api.md (noted below).
func FuzzDecodeSameAsLegacy(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, contentType, headers string, body []byte) {
		got, gotErr := Decode(fuzzRequest(contentType, headers, body))
		want, wantErr := legacyDecode(fuzzRequest(contentType, headers, body))
		if gotErr != nil && wantErr == nil && legacyBlankAttribute(want) {
			return // sdk-go trimmed a binary-mode type or source to nothing and the event was stored
		}
		if gotErr == nil && wantErr != nil && len(headers) == 0 && strings.Contains(wantErr.Error(), "not a valid CloudEvent") {
			return // sdk-go's parser refused a repeated datacontenttype or escapes in data_base64
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("errors differ: %v, legacy %v", gotErr, wantErr)
		}
		if gotErr != nil {
			var g, w *fossil.InvalidError
			if problem.Status(gotErr) != problem.Status(wantErr) {
				t.Fatalf("status %d %v, legacy %d %v", problem.Status(gotErr), gotErr, problem.Status(wantErr), wantErr)
			}
			if errors.As(gotErr, &g) && errors.As(wantErr, &w) && (g.Location != w.Location || g.Message != w.Message) {
				// Both decoders walk the headers in Go's map order, so with
				// several bad ce- headers either may be named first.
				if !(strings.HasPrefix(g.Location, "header.ce-") && strings.HasPrefix(w.Location, "header.ce-") && len(headers) > 1) {
					t.Fatalf("problem %s: %s, legacy %s: %s", g.Location, g.Message, w.Location, w.Message)
				}
			}
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%d events, legacy %d", len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if !bytes.Equal(g.Event.Doc, w.Event.Doc) || g.Event.ID != w.Event.ID || g.Event.Source != w.Event.Source ||
				g.Event.Type != w.Event.Type || g.Event.Subject != w.Event.Subject || !g.Event.Time.Equal(w.Event.Time) ||
				g.DataKind != w.DataKind || !bytes.Equal(g.Data, w.Data) || g.DataContentType != w.DataContentType || g.Location != w.Location {
				t.Fatalf("event %d differs:\n%+v\n%s\nlegacy:\n%+v\n%s", i, g.Event, g.Event.Doc, w.Event, w.Event.Doc)
			}
			if g.Event.LeafTail != nil {
				tail, err := fossil.LeafTail(g.Event.Doc, "", g.Event.Salt)
				if err != nil || !bytes.Equal(tail, g.Event.LeafTail) {
					t.Fatalf("event %d: leaf tail %q, from the document %q (%v)", i, g.Event.LeafTail, tail, err)
				}
			}
		}
	})
}

// legacyBlankAttribute reports whether the previous decoder accepted an
// event whose type or source is blank, which sdk-go's validation, run now,
// refuses.
func legacyBlankAttribute(ds []*legacyDecoded) bool {
	for _, d := range ds {
		if strings.TrimSpace(d.Event.Type) == "" || strings.TrimSpace(d.Event.Source) == "" {
			return true
		}
	}
	return false
}
