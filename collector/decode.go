package collector

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

// Media types of the structured and batched content modes.
const (
	mediaStructured = "application/cloudevents+json"
	mediaBatch      = "application/cloudevents-batch+json"
)

// maxBatchEvents bounds the members of one batch.
const maxBatchEvents = 10000

// Decoded is one event parsed from a request, ready to store.
type Decoded struct {
	Event    *fossil.Event
	Location string // "body", "header" or "body[i]", for error messages
	DataKind fossil.DataKind
	Data     []byte // the data as it is stored: compact JSON, text or binary
	// DataContentType is the event's datacontenttype ("" when absent).
	DataContentType string

	// What the document was encoded from, to encode it again with the
	// trace context (SetTraceContext).
	ev                 *event.Event
	source, dataschema string
}

// SetTraceContext gives the event the CloudEvents distributed-tracing
// extension (traceparent, and tracestate when not empty) unless it carries
// a traceparent of its own, and encodes its document again.
func (d *Decoded) SetTraceContext(traceparent, tracestate string) {
	if d.ev == nil || traceparent == "" {
		return
	}
	if _, ok := d.ev.Extensions()["traceparent"]; ok {
		return
	}
	ev := d.ev.Clone()
	ev.SetExtension("traceparent", traceparent)
	if tracestate != "" {
		ev.SetExtension("tracestate", tracestate)
	}
	d.Event.Doc, d.Event.LeafTail = fossil.EncodeDocLeaf(&ev, d.source, d.dataschema, d.DataKind, d.Data, d.Event.Salt)
}

// Decode parses the CloudEvents in r in any content mode. The body must be
// limited by the caller (http.MaxBytesReader). Errors are
// [*fossil.InvalidError] (400), [fossil.ErrUnsupportedMediaType] (415) or an
// [*http.MaxBytesError] (413).
//
// sdk-go parses the attributes. Decode adds what sdk-go leaves out: it
// percent-decodes ce-* header values, rejects data together with
// data_base64, validates every member of a batch, rejects reserved fossil*
// extensions, and takes the data itself so that any JSON media type (also
// */*+json) keeps its JSON value.
func Decode(r *http.Request) ([]*Decoded, error) {
	mediaType := mediaTypeOf(r.Header.Get("Content-Type"))
	switch {
	case mediaType == mediaStructured:
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		d, err := decodeStructured("body", body, nil)
		if err != nil {
			return nil, err
		}
		return []*Decoded{d}, nil
	case mediaType == mediaBatch:
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		return decodeBatch(body)
	case strings.HasPrefix(mediaType, "application/cloudevents"):
		return nil, fmt.Errorf("%w: event format %q is not supported; use %s, %s or binary mode", fossil.ErrUnsupportedMediaType, mediaType, mediaStructured, mediaBatch)
	case hasCEHeaders(r.Header):
		d, err := decodeBinary(r)
		if err != nil {
			return nil, err
		}
		return []*Decoded{d}, nil
	default:
		return nil, fmt.Errorf("%w: the request has no ce-* headers and its Content-Type %q is neither %s nor %s", fossil.ErrUnsupportedMediaType, r.Header.Get("Content-Type"), mediaStructured, mediaBatch)
	}
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	// Reserve only what has arrived, in steps: a client that claims a
	// large Content-Length and then sends slowly must not make the server
	// hold memory it has not been sent. The caller has already refused a
	// Content-Length above the body limit (see [CheckContentLength]), and
	// r.Body stops at that limit.
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 {
		buf.Grow(int(min(n, initialBodyBuffer)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(r.Body)
	body := buf.Bytes()
	if err != nil {
		return nil, problem.BodyError(err)
	}
	return body, nil
}

// initialBodyBuffer is the most readBody reserves before bytes arrive.
const initialBodyBuffer = 64 << 10

// CheckContentLength refuses, before any byte of the body is read, a
// request whose Content-Length exceeds limit: the error is the
// [*http.MaxBytesError] that reading would have returned (413).
func CheckContentLength(r *http.Request, limit int64) error {
	if r.ContentLength > limit {
		return &http.MaxBytesError{Limit: limit}
	}
	return nil
}

func hasCEHeaders(h http.Header) bool {
	for k := range h {
		if len(k) > 3 && strings.EqualFold(k[:3], "ce-") {
			return true
		}
	}
	return false
}

// value is one context attribute as received: in structured mode its JSON
// text (raw) and, for a string, the decoded text; in binary mode the
// percent-decoded header value.
type value struct {
	raw   []byte // structured mode
	str   string // binary mode, or the decoded JSON string
	isStr bool
	set   bool
}

// absent reports whether the attribute is missing or null.
func (v value) absent() bool { return !v.set || (!v.isStr && string(v.raw) == "null") }

type extension struct {
	name string
	value
}

// attrs are one event's context attributes as received, and the data
// members of structured mode.
type attrs struct {
	loc    string // "body", "header" or "body[i]"
	binary bool
	specversion, id, source, typ, subject, time, dataschema,
	datacontenttype, data, dataBase64 value
	exts []extension

	// Set by check: the parsed forms of the attributes sdk-go's event
	// carries parsed.
	sourceURL, dataschemaURL *url.URL
	parsedTime               time.Time
	// dataSpace is set when the data member holds white space to remove.
	dataSpace bool
}

// slot returns the field of a known attribute, nil for an extension.
func (a *attrs) slot(name string) *value {
	switch name {
	case "specversion":
		return &a.specversion
	case "id":
		return &a.id
	case "source":
		return &a.source
	case "type":
		return &a.typ
	case "subject":
		return &a.subject
	case "time":
		return &a.time
	case "dataschema":
		return &a.dataschema
	case "datacontenttype":
		return &a.datacontenttype
	case "data":
		return &a.data
	case "data_base64":
		return &a.dataBase64
	}
	return nil
}

// setExtension records an extension; like encoding/json, a repeated name
// keeps its last value.
func (a *attrs) setExtension(name string, v value) {
	for i := range a.exts {
		if a.exts[i].name == name {
			a.exts[i].value = v
			return
		}
	}
	a.exts = append(a.exts, extension{name, v})
}

// binaryAttribute is the attribute of a ce- header name (after the
// prefix, in any case): its canonical name and whether it is one of the
// names the switch knows (otherwise an extension, lower-cased).
func binaryAttribute(h string) (string, bool) {
	for _, name := range [...]string{"specversion", "id", "source", "type", "subject", "time", "dataschema", "data", "data_base64", "datacontenttype"} {
		if len(h) == len(name) && strings.EqualFold(h, name) {
			return name, true
		}
	}
	return strings.ToLower(h), false
}

// decodeBinary handles binary mode: attributes in ce-* headers, the body is
// the data.
func decodeBinary(r *http.Request) (*Decoded, error) {
	a := &attrs{loc: "header", binary: true}
	for k, vs := range r.Header {
		if len(k) <= 3 || !strings.EqualFold(k[:3], "ce-") {
			continue
		}
		name, known := binaryAttribute(k[3:])
		switch name {
		case "data", "data_base64", "datacontenttype":
			// Not context attributes: in binary mode the data is the body
			// and its type the Content-Type header. A ce-data extension
			// would also clash with the document's data member.
			return nil, fossil.Invalid("header.ce-"+name, "%q cannot be sent as a ce- header: in binary mode the data is the body and datacontenttype is the Content-Type header", name)
		}
		if len(vs) != 1 {
			return nil, fossil.Invalid("header.ce-"+name, "attribute %q is sent %d times", name, len(vs))
		}
		s, err := percentDecode(vs[0])
		if err != nil {
			return nil, fossil.Invalid("header.ce-"+name, "%s", err.Error())
		}
		v := value{str: s, isStr: true, set: true}
		if known {
			*a.slot(name) = v
		} else {
			a.setExtension(name, v)
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		a.datacontenttype = value{str: ct, isStr: true, set: true}
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	ev, err := a.event()
	if err != nil {
		return nil, err
	}
	d := &Decoded{Location: a.loc, DataContentType: ev.DataContentType()}
	if len(body) > 0 {
		kind, data, err := classifyData("body", ev.DataContentType(), body) // the data is the body
		if err != nil {
			return nil, err
		}
		d.DataKind, d.Data = kind, data
	}
	return finish(d, ev, a, nil)
}

// classifyData decides how binary-mode data is kept: JSON media types must
// carry valid JSON (stored compact), text is kept as a string, anything else
// as bytes. Without a media type, valid JSON is JSON and the rest is bytes.
func classifyData(loc, contentType string, body []byte) (fossil.DataKind, []byte, error) {
	switch {
	case isJSONMedia(contentType):
		data, err := compactJSON(body)
		if err != nil {
			return 0, nil, fossil.Invalid(loc, "datacontenttype %q says JSON but the data is not valid JSON: %s", contentType, err.Error())
		}
		return fossil.DataJSON, data, nil
	case contentType == "":
		if space, ok := scanValue(body); ok {
			return fossil.DataJSON, compactIf(space, body), nil
		}
		return fossil.DataBase64, body, nil
	case isTextMedia(contentType) && utf8.Valid(body):
		return fossil.DataString, body, nil
	default:
		return fossil.DataBase64, body, nil
	}
}

// compactJSON validates JSON (UTF-8 included) and returns it without
// insignificant whitespace.
func compactJSON(b []byte) ([]byte, error) {
	space, ok := scanValue(b)
	if !ok {
		return nil, errors.New(malformed(b))
	}
	return compactIf(space, b), nil
}

// compactIf returns the valid JSON b without insignificant white space,
// which the scanner found in it when space is set: b itself otherwise,
// which is how clients usually send JSON.
func compactIf(space bool, b []byte) []byte {
	if !space {
		return b
	}
	var buf bytes.Buffer
	buf.Grow(len(b))
	_ = json.Compact(&buf, b) // b is valid
	return buf.Bytes()
}

// mediaTypeOf returns the lower-cased type/subtype of a media type that
// check has already validated: the text before any parameters.
func mediaTypeOf(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	for i := 0; i < len(mt); i++ {
		if c := mt[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(mt)
		}
	}
	return mt
}

// isJSONMedia reports whether a datacontenttype is JSON: application/json,
// text/json or any */*+json. An absent type is not JSON here; callers decide.
func isJSONMedia(contentType string) bool {
	mt := mediaTypeOf(contentType)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func isTextMedia(contentType string) bool {
	mt := mediaTypeOf(contentType)
	return strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml") ||
		mt == "application/x-www-form-urlencoded" || mt == "application/javascript" || mt == "application/yaml"
}

// decodeStructured handles one structured-mode event.
func decodeStructured(loc string, body []byte, salt []byte) (*Decoded, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		if !validJSON(body) {
			return nil, fossil.Invalid(loc, "malformed JSON: the body must be a CloudEvent JSON object")
		}
		return nil, fossil.Invalid(loc, "a structured CloudEvent must be a JSON object")
	}
	members, ok := scanObject(body)
	if !ok {
		return nil, fossil.Invalid(loc, "malformed JSON: %s", malformed(body))
	}
	return decodeObject(loc, string(body), body, members, salt)
}

// decodeObject decodes one structured event from the members of a valid
// JSON object. text is the body as a string, of which the attributes
// without escapes become substrings (body and text hold the same bytes).
func decodeObject(loc, text string, body []byte, members []member, salt []byte) (*Decoded, error) {
	a := &attrs{loc: loc}
	for _, m := range members {
		var name string
		if m.nameEsc {
			if err := json.Unmarshal(body[m.nameAt:m.nameEnd], &name); err != nil {
				return nil, fossil.Invalid(loc, "malformed JSON: %s", err.Error())
			}
		} else {
			name = text[m.nameAt+1 : m.nameEnd-1]
		}
		v := value{raw: body[m.rawAt:m.rawEnd], set: true}
		switch {
		case body[m.rawAt] == '"' && !m.esc:
			// No escapes: the text between the quotes is the string.
			v.str, v.isStr = text[m.rawAt+1:m.rawEnd-1], true
		case body[m.rawAt] == '"':
			if err := json.Unmarshal(v.raw, &v.str); err != nil {
				return nil, fossil.Invalid(loc+"."+name, "malformed JSON string: %s", err.Error())
			}
			v.isStr = true
		}
		if slot := a.slot(name); slot != nil {
			*slot = v
			if name == "data" {
				a.dataSpace = m.space
			}
		} else {
			a.setExtension(name, v)
		}
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	// Decode data_base64 first, so a bad one is reported as such.
	var b64 []byte
	if a.dataBase64.isStr {
		var err error
		if b64, err = base64.StdEncoding.DecodeString(a.dataBase64.str); err != nil {
			return nil, fossil.Invalid(loc+".data_base64", "data_base64 is not valid base64: %s", err.Error())
		}
	}
	ev, err := a.event()
	if err != nil {
		return nil, err
	}
	d := &Decoded{Location: loc, DataContentType: ev.DataContentType()}
	if !a.dataBase64.absent() {
		data := b64
		if isJSONMedia(d.DataContentType) && !validJSON(data) {
			return nil, fossil.Invalid(loc+".data_base64", "datacontenttype %q says JSON but the decoded data is not valid JSON", d.DataContentType)
		}
		d.DataKind, d.Data = fossil.DataBase64, data
	} else if !a.data.absent() {
		ct := d.DataContentType
		switch {
		case ct == "" || isJSONMedia(ct):
			// The whole body was validated, the data with it.
			d.DataKind, d.Data = fossil.DataJSON, compactIf(a.dataSpace, a.data.raw)
		case a.data.isStr:
			d.DataKind, d.Data = fossil.DataString, []byte(a.data.str)
		default:
			return nil, fossil.Invalid(loc+".data", "datacontenttype %q is not JSON, so data must be a JSON string (or use data_base64)", ct)
		}
	}
	return finish(d, ev, a, salt)
}

// decodeBatch handles batched mode: a JSON array of structured events.
func decodeBatch(body []byte) ([]*Decoded, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '[' {
		if !validJSON(body) {
			return nil, fossil.Invalid("body", "malformed JSON: a batch must be a JSON array of CloudEvents")
		}
		return nil, fossil.Invalid("body", "a batch must be a JSON array of CloudEvents")
	}
	elems, members, ok := scanArray(body)
	switch {
	case !ok:
		return nil, fossil.Invalid("body", "malformed JSON: %s", malformed(body))
	case len(elems) == 0:
		return nil, fossil.Invalid("body", "the batch is empty")
	case len(elems) > maxBatchEvents:
		return nil, fossil.Invalid("body", "the batch holds %d events; at most %d are allowed", len(elems), maxBatchEvents)
	}
	text := string(body)
	salts := fossil.NewSalts(len(elems))
	out := make([]*Decoded, len(elems))
	for i, e := range elems {
		loc := "body[" + strconv.Itoa(i) + "]"
		if !e.object {
			return nil, fossil.Invalid(loc, "a structured CloudEvent must be a JSON object")
		}
		d, err := decodeObject(loc, text, body, members[e.first:e.first+e.n], salts[i])
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// event builds the sdk-go event of checked attributes. Binary mode sets
// them with sdk-go's setters and validates the event, as sdk-go's HTTP
// binding does (it trims id, type, subject and datacontenttype); structured
// mode takes them as sdk-go's JSON format does, untrimmed. Extensions go
// through sdk-go's SetExtension either way, which lower-cases, validates and
// types them (string, int32, bool).
func (a *attrs) event() (*event.Event, error) {
	ev := event.New()
	ec := ev.Context.(*event.EventContextV1)
	ec.Source = types.URIRef{URL: *a.sourceURL}
	if a.dataschemaURL != nil {
		ec.DataSchema = &types.URI{URL: *a.dataschemaURL}
	}
	if !a.parsedTime.IsZero() {
		ec.Time = &types.Timestamp{Time: a.parsedTime}
	}
	if a.binary {
		ev.SetID(a.id.str)
		ev.SetType(a.typ.str)
		if a.subject.set {
			ev.SetSubject(a.subject.str)
		}
		if a.datacontenttype.set {
			ev.SetDataContentType(a.datacontenttype.str)
		}
	} else {
		ec.ID, ec.Type = a.id.str, a.typ.str
		if !a.subject.absent() {
			s := a.subject.str
			ec.Subject = &s
		}
		if !a.datacontenttype.absent() {
			ct := a.datacontenttype.str
			ec.DataContentType = &ct
		}
	}
	for _, x := range a.exts {
		switch {
		case x.absent():
		case x.isStr:
			ev.SetExtension(x.name, x.str)
		case string(x.raw) == "true", string(x.raw) == "false":
			ev.SetExtension(x.name, string(x.raw) == "true")
		default:
			n, _ := strconv.ParseInt(string(x.raw), 10, 32) // check allowed only 32-bit integers
			ev.SetExtension(x.name, int32(n))
		}
	}
	var err error
	if a.binary {
		err = ev.Validate()
	} else if len(ev.FieldErrors) > 0 {
		err = event.ValidationError(ev.FieldErrors)
	}
	if err != nil {
		return nil, fossil.Invalid(a.loc, "not a valid CloudEvent: %s", err.Error())
	}
	return &ev, nil
}

// finish builds the stored form of a decoded event. source and dataschema
// are kept as received (see [fossil.EncodeDocVerbatim]). With a salt, the
// event also gets its leaf tail (see [fossil.EncodeDocLeaf]), which the
// appender would otherwise read back from the document.
func finish(d *Decoded, ev *event.Event, a *attrs, salt []byte) (*Decoded, error) {
	dataschema := ""
	if a.dataschema.isStr {
		dataschema = a.dataschema.str
	}
	if salt == nil {
		salt = fossil.NewSalt()
	}
	doc, tail := fossil.EncodeDocLeaf(ev, a.source.str, dataschema, d.DataKind, d.Data, salt)
	d.ev, d.source, d.dataschema = ev, a.source.str, dataschema
	d.Event = &fossil.Event{
		ID:       ev.ID(),
		Source:   a.source.str,
		Type:     ev.Type(),
		Subject:  ev.Subject(),
		Time:     ev.Time(),
		Doc:      doc,
		Salt:     salt,
		LeafTail: tail,
	}
	return d, nil
}

// check validates the context attributes as received, naming the
// offending attribute. In binary mode (ce-* headers) every value is a
// string.
func (a *attrs) check() error {
	at := func(name string) string {
		if a.binary {
			if name == "datacontenttype" {
				return "header.Content-Type"
			}
			return "header.ce-" + name
		}
		return a.loc + "." + name
	}
	str := func(name string, v value, required bool) (string, bool, error) {
		if v.absent() {
			if required {
				return "", false, fossil.Invalid(at(name), "required attribute %q is missing", name)
			}
			return "", false, nil
		}
		if !v.isStr {
			return "", false, fossil.Invalid(at(name), "attribute %q must be a string", name)
		}
		if required && v.str == "" {
			return "", false, fossil.Invalid(at(name), "required attribute %q is empty", name)
		}
		if msg := stringProblem(name, v.str); msg != "" {
			return "", false, fossil.Invalid(at(name), "%s", msg)
		}
		return v.str, true, nil
	}

	sv, _, err := str("specversion", a.specversion, true)
	if err != nil {
		return err
	}
	if sv != "1.0" {
		return fossil.Invalid(at("specversion"), "specversion %q is not supported; only 1.0 is", sv)
	}
	if _, _, err := str("id", a.id, true); err != nil {
		return err
	}
	if _, _, err := str("source", a.source, true); err != nil {
		return err
	}
	if _, _, err := str("type", a.typ, true); err != nil {
		return err
	}
	if a.sourceURL, err = url.Parse(a.source.str); err != nil {
		return fossil.Invalid(at("source"), "source %q is not a URI-reference", a.source.str)
	}
	if s, ok, err := str("subject", a.subject, false); err != nil {
		return err
	} else if ok && s == "" {
		return fossil.Invalid(at("subject"), "subject must not be empty when present")
	}
	if s, ok, err := str("time", a.time, false); err != nil {
		return err
	} else if ok {
		if a.parsedTime, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fossil.Invalid(at("time"), "time %q is not an RFC 3339 timestamp", s)
		}
	}
	if s, ok, err := str("dataschema", a.dataschema, false); err != nil {
		return err
	} else if ok {
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() {
			return fossil.Invalid(at("dataschema"), "dataschema %q must be an absolute URI", s)
		}
		a.dataschemaURL = u
	}
	if s, ok, err := str("datacontenttype", a.datacontenttype, false); err != nil {
		return err
	} else if ok && !isPlainMediaType(s) {
		if _, _, err := mime.ParseMediaType(s); err != nil {
			return fossil.Invalid(at("datacontenttype"), "datacontenttype %q is not a valid media type: %s", s, err.Error())
		}
	}
	if !a.binary {
		hasData, hasB64 := !a.data.absent(), !a.dataBase64.absent()
		if hasData && hasB64 {
			return fossil.Invalid(a.loc+".data_base64", "an event must not carry both data and data_base64")
		}
		if hasB64 && !a.dataBase64.isStr {
			return fossil.Invalid(a.loc+".data_base64", "data_base64 must be a string")
		}
	}
	for _, x := range a.exts {
		if err := checkExtension(at, x.name, x.value); err != nil {
			return err
		}
	}
	return nil
}

// isPlainMediaType reports whether s is a media type without parameters
// that mime.ParseMediaType accepts: a token, '/', a token (RFC 2045),
// checked without the allocations of the full parser. Anything else goes
// to the full parser.
func isPlainMediaType(s string) bool {
	slash := strings.IndexByte(s, '/')
	return slash > 0 && slash < len(s)-1 && isToken(s[:slash]) && isToken(s[slash+1:])
}

// isToken reports whether s is an RFC 2045 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// checkExtension validates an extension attribute: a name of lowercase
// letters and digits that is not reserved, and a string, integer or boolean.
// at gives the location of an attribute, asked for only on failure.
func checkExtension(at func(string) string, name string, v value) error {
	if name == "" || len(name) > 64 {
		return fossil.Invalid(at(name), "extension name %q must be 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fossil.Invalid(at(name), "extension name %q may only contain lowercase letters a-z and digits", name)
		}
	}
	if strings.HasPrefix(name, fossil.ReservedPrefix) {
		return fossil.Invalid(at(name), "extension %q is reserved: fossil* attributes are set by the server", name)
	}
	if v.isStr {
		if msg := stringProblem(name, v.str); msg != "" {
			return fossil.Invalid(at(name), "%s", msg)
		}
		return nil
	}
	raw := string(v.raw)
	switch {
	case raw == "null", raw == "true", raw == "false":
		return nil
	case len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')):
		var n json.Number
		if err := json.Unmarshal(v.raw, &n); err != nil {
			return fossil.Invalid(at(name), "extension %q is not a valid number", name)
		}
		i, err := n.Int64()
		if err != nil || i < -1<<31 || i > 1<<31-1 {
			return fossil.Invalid(at(name), "extension %q must be a 32-bit integer, got %s", name, raw)
		}
		return nil
	default:
		return fossil.Invalid(at(name), "extension %q must be a string, integer or boolean", name)
	}
}

// stringProblem says why s cannot be the value of string attribute name:
// it is not UTF-8, or else it holds a control character, which CloudEvents
// forbids in string attributes. It is "" when s is fine.
func stringProblem(name, s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return controlProblem(name, s[i:])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Sprintf("attribute %q is not valid UTF-8", name)
		}
		if unicode.IsControl(r) {
			return controlProblem(name, s[i:])
		}
		i += size
	}
	return ""
}

// controlProblem is stringProblem's answer for a string whose rest, from a
// control character on, is rest: invalid UTF-8 is reported first.
func controlProblem(name, rest string) string {
	if !utf8.ValidString(rest) {
		return fmt.Sprintf("attribute %q is not valid UTF-8", name)
	}
	return fmt.Sprintf("attribute %q contains a control character", name)
}

// percentDecode decodes a ce-* header value as the CloudEvents HTTP binding
// requires: %XX sequences become bytes, a '%' that starts none is an error,
// and the result must be UTF-8.
func percentDecode(s string) (string, error) {
	out, ok := fossil.PercentDecode(s)
	if !ok {
		return "", errors.New("invalid percent-encoding: a '%' must start %XX with two hex digits")
	}
	if !utf8.ValidString(out) {
		return "", errors.New("percent-decoded value is not valid UTF-8")
	}
	return out, nil
}

// DecodeStructured decodes one event given as a structured-mode JSON
// document with every check of POST /collect; loc names it in errors. The
// protobuf interface converts its events to such a document.
func DecodeStructured(loc string, body []byte) (*Decoded, error) {
	return decodeStructured(loc, body, nil)
}
