package fossil

import (
	"encoding/base64"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Event is a CloudEvent as Fossil stores and serves it.
type Event struct {
	Number      int64  // global, dense, in commit order
	Stream      string // the stream the event was collected into
	Sequence    int64  // position in Stream, from 1, dense
	ID          string
	Source      string
	Type        string
	Subject     string    // empty when absent
	Time        time.Time // zero when absent
	ExpectAck   []string  // consumers a writer waits for, in the order given
	Doc         []byte    // compact structured-mode JSON without fossil* extensions
	CommittedAt time.Time // when the server committed the event, UTC
	// Salt salts the digest of the data in the event's leaf of the log's
	// Merkle tree, and LeafTail is that leaf without its position (see
	// [LeafTail]); the appender sets both before the event is numbered.
	Salt, LeafTail []byte
}

// DataKind says how an event's data is represented in its JSON document.
type DataKind uint8

// Data representations of the CloudEvents JSON format.
const (
	DataNone   DataKind = iota // no data
	DataJSON                   // "data": a JSON value (already validated)
	DataString                 // "data": a JSON string of UTF-8 text
	DataBase64                 // "data_base64": binary
)

// EncodeDocVerbatim renders ev as Fossil's canonical document: compact
// CloudEvents JSON with attributes in a fixed order, extensions sorted by
// name and data represented as kind says. Identical events always encode to
// identical bytes, which is how idempotent retries are recognised. The URI
// attributes source and dataschema ("" when absent) are written exactly as
// the client sent them: sdk-go re-serialises the URIs it parses (it escapes
// spaces and non-ASCII characters and lowercases the scheme), which would
// change source, a part of the event's identity, and what readers get back.
func EncodeDocVerbatim(ev *event.Event, source, dataschema string, kind DataKind, data []byte) []byte {
	doc, _ := EncodeDocLeaf(ev, source, dataschema, kind, data, nil)
	return doc
}

// EncodeDocLeaf returns [EncodeDocVerbatim]'s document and, when salt is
// set, the document's [LeafTail] for an event without fossilexpectack,
// built from the same attributes instead of read back from the document.
// The tail is nil when salt is nil or when an attribute is not valid
// UTF-8 (the document then replaced bytes of it, and only [LeafTail] can
// say what the leaf holds).
func EncodeDocLeaf(ev *event.Event, source, dataschema string, kind DataKind, data []byte, salt []byte) (doc, tail []byte) {
	var leaf leafMembers
	leaf.on = salt != nil
	b := make([]byte, 0, 256+len(data)*4/3)
	b = append(b, `{"specversion":"1.0","id":`...)
	leaf.add("specversion", 's', "1.0")
	id := ev.ID()
	b = AppendJSONString(b, id)
	leaf.add("id", 's', id)
	b = append(b, `,"source":`...)
	b = AppendJSONString(b, source)
	leaf.add("source", 's', source)
	b = append(b, `,"type":`...)
	typ := ev.Type()
	b = AppendJSONString(b, typ)
	leaf.add("type", 's', typ)
	if s := ev.Subject(); s != "" {
		b = append(b, `,"subject":`...)
		b = AppendJSONString(b, s)
		leaf.add("subject", 's', s)
	}
	if t := ev.Time(); !t.IsZero() {
		b = append(b, `,"time":"`...)
		k := len(b)
		b = t.UTC().AppendFormat(b, time.RFC3339Nano)
		if leaf.on {
			leaf.add("time", 's', string(b[k:]))
		}
		b = append(b, '"')
	}
	if ct := ev.DataContentType(); ct != "" {
		b = append(b, `,"datacontenttype":`...)
		b = AppendJSONString(b, ct)
		leaf.add("datacontenttype", 's', ct)
	}
	if dataschema != "" {
		b = append(b, `,"dataschema":`...)
		b = AppendJSONString(b, dataschema)
		leaf.add("dataschema", 's', dataschema)
	}
	exts := ev.Extensions()
	if len(exts) > 0 {
		names := make([]string, 0, len(exts))
		for name := range exts {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			b = append(b, ',')
			b = AppendJSONString(b, name)
			b = append(b, ':')
			k := len(b)
			b = appendExtensionValue(b, exts[name])
			if leaf.on {
				if v := b[k:]; v[0] == '"' {
					leaf.add(name, 's', extensionString(exts[name]))
				} else {
					leaf.add(name, 'j', string(v))
				}
			}
		}
	}
	dataKind, payload := byte('n'), data
	switch kind {
	case DataJSON:
		b = append(b, `,"data":`...)
		b = append(b, data...)
		dataKind = 'j'
	case DataString:
		b = append(b, `,"data":`...)
		k := len(b)
		b = AppendJSONString(b, string(data))
		dataKind, payload = 'j', b[k:]
	case DataBase64:
		b = append(b, `,"data_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, '"')
		dataKind = 'b'
	default:
		payload = nil
	}
	b = append(b, '}')
	if !leaf.on || !leaf.valid {
		return b, nil
	}
	return b, leaf.tail(salt, dataKind, payload)
}

// extensionString is the string an extension value of a kind
// appendExtensionValue quotes is written as.
func extensionString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	s, err := types.Format(v)
	if err != nil {
		return ""
	}
	return s
}

func appendExtensionValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case bool:
		return strconv.AppendBool(b, v)
	case string:
		return AppendJSONString(b, v)
	default:
		s, err := types.Format(v)
		if err != nil {
			s = ""
		}
		return AppendJSONString(b, s)
	}
}

// AppendJSON appends the event as one line of CloudEvents JSON carrying the
// fossil* extensions, as served by SSE and the read API.
func (e *Event) AppendJSON(b []byte) []byte {
	doc := e.Doc
	if len(doc) < 2 || doc[len(doc)-1] != '}' {
		doc = []byte("{}")
	}
	b = append(b, doc[:len(doc)-1]...)
	if len(doc) > 2 {
		b = append(b, ',')
	}
	b = append(b, `"`+ExtEventNumber+`":`...)
	b = strconv.AppendInt(b, e.Number, 10)
	b = append(b, `,"`+ExtSequenceInStream+`":`...)
	b = strconv.AppendInt(b, e.Sequence, 10)
	b = append(b, `,"`+ExtStream+`":`...)
	b = AppendJSONString(b, e.Stream)
	if len(e.ExpectAck) > 0 {
		b = append(b, `,"`+ExtExpectAck+`":"`...)
		for i, name := range e.ExpectAck {
			if i > 0 {
				b = append(b, ',')
			}
			s := AppendJSONString(nil, name)
			b = append(b, s[1:len(s)-1]...)
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD; control characters, quotes and backslashes are escaped, and so are
// U+2028 and U+2029 so the output is safe in any line-based framing.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
