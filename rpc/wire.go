package rpc

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fossil-events/fossil/fossil"
)

// Field numbers of fossil.v1.Event, io.cloudevents.v1.CloudEvent,
// CloudEventAttributeValue, google.protobuf.Timestamp and
// SubscribeResponse, for the encoder below.
const (
	eventCloudEvent = 1
	eventStream     = 2
	eventNumber     = 3
	eventSequence   = 4
	eventExpectAck  = 5
	ceID            = 1
	ceSource        = 2
	ceSpecVersion   = 3
	ceType          = 4
	ceAttributes    = 5
	ceBinaryData    = 6
	ceTextData      = 7
	attrBoolean     = 1
	attrInteger     = 2
	attrString      = 3
	attrURI         = 5
	attrTimestamp   = 7
	tsSeconds       = 1
	tsNanos         = 2
	subscribeEvents = 1
	mapEntryKey     = 1
	mapEntryValue   = 2
	maxScratch      = 64 << 10
)

// wireEncoder renders stored events as the protobuf wire form of
// fossil.v1.Event straight from their JSON documents, without building the
// messages: Subscribe sends every event of a replay, and building a
// CloudEvent message per event (then marshalling it through reflection)
// cost about as much as everything else a replay does. Each event is read
// once (where its members are, what each attribute becomes), sized, and
// written once into the message. The bytes decode to exactly what
// [ToProto] returns (its tests hold the two equal); a document the encoder
// does not expect (not Fossil's compact form: duplicate members, escaped
// names or strings, a non-string core attribute…) goes through ToProto and
// proto.Marshal instead. Not safe for concurrent use: it keeps the parts of
// the event at hand and scratch buffers between events.
type wireEncoder struct {
	core      [4][]byte // id, source, specversion, type: string contents
	attrs     []attr    // the attributes map, in document order
	data      []byte    // binary_data or text_data
	dataField protowire.Number
	ts        [24]byte // the time's Timestamp message
	ev, bin   []byte
}

// attr is one entry of the attributes map: a name and the one field of its
// CloudEventAttributeValue (a varint n or the bytes body).
type attr struct {
	name  []byte
	field protowire.Number
	typ   protowire.Type
	body  []byte
	n     uint64
}

func (a *attr) valueSize() int {
	if a.typ == protowire.VarintType {
		return protowire.SizeTag(a.field) + protowire.SizeVarint(a.n)
	}
	return protowire.SizeTag(a.field) + protowire.SizeBytes(len(a.body))
}

func (a *attr) entrySize() int {
	return protowire.SizeTag(mapEntryKey) + protowire.SizeBytes(len(a.name)) +
		protowire.SizeTag(mapEntryValue) + protowire.SizeBytes(a.valueSize())
}

func (a *attr) appendEntry(b []byte) []byte {
	b = protowire.AppendTag(b, ceAttributes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(a.entrySize()))
	b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
	b = protowire.AppendBytes(b, a.name)
	b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(a.valueSize()))
	b = protowire.AppendTag(b, a.field, a.typ)
	if a.typ == protowire.VarintType {
		return protowire.AppendVarint(b, a.n)
	}
	return protowire.AppendBytes(b, a.body)
}

var (
	nameDataSchema = []byte("dataschema")
	nameTime       = []byte("time")
)

// appendEvent appends the protobuf encoding of e as a fossil.v1.Event
// (without a tag or length).
func (w *wireEncoder) appendEvent(b []byte, e *fossil.Event) ([]byte, error) {
	if w.parse(e) {
		ce := w.cloudEventSize()
		return w.appendParsed(b, e, ce), nil
	}
	pe, err := ToProto(e)
	if err != nil {
		return b, err
	}
	return proto.MarshalOptions{}.MarshalAppend(b, pe)
}

// appendSubscribeEvents appends each event as field 1 (events) of a
// SubscribeResponse: the message's bytes.
func (w *wireEncoder) appendSubscribeEvents(b []byte, events []*fossil.Event) ([]byte, error) {
	for _, e := range events {
		b = protowire.AppendTag(b, subscribeEvents, protowire.BytesType)
		if w.parse(e) {
			ce := w.cloudEventSize()
			b = protowire.AppendVarint(b, uint64(w.eventSize(e, ce)))
			b = w.appendParsed(b, e, ce)
			continue
		}
		var err error
		w.ev, err = w.appendEvent(w.ev[:0], e)
		if err != nil {
			return b, err
		}
		b = protowire.AppendBytes(b, w.ev)
	}
	if cap(w.ev) > maxScratch {
		w.ev = nil
	}
	if cap(w.bin) > maxScratch {
		w.bin = nil
	}
	return b, nil
}

// cloudEventSize is the size of the parsed CloudEvent message.
func (w *wireEncoder) cloudEventSize() int {
	n := 0
	for _, s := range w.core {
		if len(s) > 0 {
			n += 1 + protowire.SizeBytes(len(s))
		}
	}
	for i := range w.attrs {
		n += 1 + protowire.SizeBytes(w.attrs[i].entrySize())
	}
	if w.dataField != 0 {
		n += 1 + protowire.SizeBytes(len(w.data))
	}
	return n
}

// eventSize is the size of e's Event message around a CloudEvent of ce
// bytes.
func (w *wireEncoder) eventSize(e *fossil.Event, ce int) int {
	n := 1 + protowire.SizeBytes(ce)
	if e.Stream != "" {
		n += 1 + protowire.SizeBytes(len(e.Stream))
	}
	if e.Number != 0 {
		n += 1 + protowire.SizeVarint(uint64(e.Number))
	}
	if e.Sequence != 0 {
		n += 1 + protowire.SizeVarint(uint64(e.Sequence))
	}
	for _, c := range e.ExpectAck {
		n += 1 + protowire.SizeBytes(len(c))
	}
	return n
}

// appendParsed writes the parsed event's Event message (its fields).
func (w *wireEncoder) appendParsed(b []byte, e *fossil.Event, ce int) []byte {
	b = protowire.AppendTag(b, eventCloudEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ce))
	for k, f := range [4]protowire.Number{ceID, ceSource, ceSpecVersion, ceType} {
		if s := w.core[k]; len(s) > 0 {
			b = protowire.AppendTag(b, f, protowire.BytesType)
			b = protowire.AppendBytes(b, s)
		}
	}
	for i := range w.attrs {
		b = w.attrs[i].appendEntry(b)
	}
	if w.dataField != 0 {
		b = protowire.AppendTag(b, w.dataField, protowire.BytesType)
		b = protowire.AppendBytes(b, w.data)
	}
	if e.Stream != "" {
		b = protowire.AppendTag(b, eventStream, protowire.BytesType)
		b = protowire.AppendString(b, e.Stream)
	}
	if e.Number != 0 {
		b = protowire.AppendTag(b, eventNumber, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Number))
	}
	if e.Sequence != 0 {
		b = protowire.AppendTag(b, eventSequence, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Sequence))
	}
	for _, c := range e.ExpectAck {
		b = protowire.AppendTag(b, eventExpectAck, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	return b
}

// Members with rules of their own, as bits of a set.
const (
	seenID = 1 << iota
	seenSource
	seenSpecVersion
	seenType
	seenData
	seenDataBase64
	seenTime
	seenDataSchema
	seenContentType
)

// parse reads e's document into the encoder's parts; false when the
// document needs ToProto's path.
func (w *wireEncoder) parse(e *fossil.Event) bool {
	doc := e.Doc
	var (
		seen                  uint16
		data, dataB64, timeV  []byte
		ct, schema            []byte
		hasData, hasB64, hasS bool
		dataFlags             scan
	)
	w.core = [4][]byte{}
	w.attrs = w.attrs[:0]
	w.dataField, w.data = 0, nil
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return false
	}
	i = skipSpace(doc, i+1)
	if i < len(doc) && doc[i] == '}' {
		i++
	} else {
		for {
			if i >= len(doc) || doc[i] != '"' {
				return false
			}
			end, nameFlags := scanString(doc, i)
			if end < 0 || nameFlags&escaped != 0 {
				return false
			}
			name := doc[i+1 : end-1]
			i = skipSpace(doc, end)
			if i >= len(doc) || doc[i] != ':' {
				return false
			}
			raw := i + 1
			vs := skipSpace(doc, raw)
			ve, flags := valueEnd(doc, vs)
			if ve < 0 {
				return false
			}
			val := doc[vs:ve]
			bit := uint16(0)
			switch string(name) {
			case "id":
				bit = seenID
			case "source":
				bit = seenSource
			case "specversion":
				bit = seenSpecVersion
			case "type":
				bit = seenType
			case "data":
				bit = seenData
			case "data_base64":
				bit = seenDataBase64
			case "time":
				bit = seenTime
			case "dataschema":
				bit = seenDataSchema
			case "datacontenttype":
				bit = seenContentType
			}
			if seen&bit != 0 {
				return false // a duplicate member: ToProto's rules
			}
			seen |= bit
			switch bit {
			case seenID, seenSource, seenSpecVersion, seenType:
				s, ok := plainString(val, flags)
				if !ok || !validUTF8(s, flags) {
					return false
				}
				switch bit {
				case seenID:
					w.core[0] = s
				case seenSource:
					w.core[1] = s
				case seenSpecVersion:
					w.core[2] = s
				default:
					w.core[3] = s
				}
			case seenData:
				// As ToProto captures it: from right after the colon.
				data, hasData, dataFlags = doc[raw:ve], true, flags
			case seenDataBase64:
				s, ok := plainString(val, flags)
				if !ok {
					return false
				}
				dataB64, hasB64 = s, true
			case seenTime:
				s, ok := plainString(val, flags)
				if !ok {
					return false
				}
				timeV = s
			case seenDataSchema:
				s, ok := plainString(val, flags)
				if !ok || !validUTF8(s, flags) {
					return false
				}
				schema, hasS = s, true
			default: // datacontenttype and extensions
				if bit == seenContentType {
					if s, ok := plainString(val, flags); ok {
						ct = s
					} else if val[0] == '"' {
						return false // an escaped media type
					}
				} else {
					for j := range w.attrs {
						if bytes.Equal(w.attrs[j].name, name) {
							return false
						}
					}
				}
				a, ok := extension(name, nameFlags, val, flags)
				if !ok {
					return false
				}
				w.attrs = append(w.attrs, a)
			}
			i = skipSpace(doc, ve)
			if i >= len(doc) {
				return false
			}
			if doc[i] == '}' {
				i++
				break
			}
			if doc[i] != ',' {
				return false
			}
			i = skipSpace(doc, i+1)
		}
	}
	if skipSpace(doc, i) != len(doc) || !utf8.ValidString(e.Stream) {
		return false
	}
	for _, c := range e.ExpectAck {
		if !utf8.ValidString(c) {
			return false
		}
	}
	if hasS {
		w.attrs = append(w.attrs, attr{name: nameDataSchema, field: attrURI, typ: protowire.BytesType, body: schema})
	}
	if len(timeV) > 0 {
		t, err := time.Parse(time.RFC3339Nano, string(timeV))
		if err != nil {
			return false
		}
		tb := w.ts[:0]
		if secs := t.Unix(); secs != 0 {
			tb = protowire.AppendTag(tb, tsSeconds, protowire.VarintType)
			tb = protowire.AppendVarint(tb, uint64(secs))
		}
		if nanos := t.Nanosecond(); nanos != 0 {
			tb = protowire.AppendTag(tb, tsNanos, protowire.VarintType)
			tb = protowire.AppendVarint(tb, uint64(nanos))
		}
		w.attrs = append(w.attrs, attr{name: nameTime, field: attrTimestamp, typ: protowire.BytesType, body: tb})
	}
	switch {
	case hasB64 && len(dataB64) > 0:
		bin, err := base64.StdEncoding.AppendDecode(w.bin[:0], dataB64)
		if err != nil {
			return false
		}
		w.bin = bin
		w.dataField, w.data = ceBinaryData, bin
	case hasData && len(data) > 0 && data[0] == '"' && len(ct) > 0 && !isJSONMedia(string(ct)):
		s, ok := plainString(data, dataFlags)
		if !ok || !validUTF8(s, dataFlags) {
			return false
		}
		w.dataField, w.data = ceTextData, s
	case hasData:
		if !validUTF8(data, dataFlags) {
			return false
		}
		w.dataField, w.data = ceTextData, data
	}
	return true
}

// extension types an extension (or datacontenttype, subject) by its JSON
// form, as attributeValue does.
func extension(name []byte, nameFlags scan, val []byte, flags scan) (attr, bool) {
	a := attr{name: name}
	if len(val) == 0 || !validUTF8(name, nameFlags) {
		return a, false
	}
	switch c := val[0]; {
	case c == '"':
		s, ok := plainString(val, flags)
		if !ok || !validUTF8(s, flags) {
			return a, false
		}
		a.field, a.typ, a.body = attrString, protowire.BytesType, s
	case c == 't' || c == 'f':
		switch string(val) {
		case "true":
			a.n = 1
		case "false":
		default:
			return a, false
		}
		a.field, a.typ = attrBoolean, protowire.VarintType
	case c == '-' || (c >= '0' && c <= '9'):
		if i, err := strconv.ParseInt(string(val), 10, 32); err == nil {
			a.field, a.typ, a.n = attrInteger, protowire.VarintType, uint64(i)
		} else {
			a.field, a.typ, a.body = attrString, protowire.BytesType, val
		}
	default: // null, objects and arrays: their JSON text
		if !validUTF8(val, flags) {
			return a, false
		}
		a.field, a.typ, a.body = attrString, protowire.BytesType, val
	}
	return a, true
}

// scan describes what scanning a JSON value found in it.
type scan uint8

const (
	escaped  scan = 1 << iota // a backslash escape
	nonASCII                  // a byte outside ASCII
)

// validUTF8 reports whether s (scanned with flags) is valid UTF-8: ASCII
// text is, without looking again.
func validUTF8(s []byte, flags scan) bool {
	return flags&nonASCII == 0 || utf8.Valid(s)
}

// plainString returns the contents of a JSON string v without escapes
// (flags from its scan).
func plainString(v []byte, flags scan) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || flags&escaped != 0 {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index after the JSON string starting at b[i] (a
// quote), -1 when it does not end, and whether it holds escapes or bytes
// outside ASCII. Fossil's names, identifiers and types are short: their
// first 24 bytes are read a word at a time, which beats searching; longer
// strings (text in data) are searched for the quote and checked for ASCII
// sixteen bytes a round.
func scanString(b []byte, i int) (int, scan) {
	var or uint64
	j := i + 1
	// Eight bytes a round: the lowest byte that is a quote or a backslash
	// (a zero byte of w^quotes or w^backslashes; the borrow of the test
	// only marks bytes above the first).
	for n := min(len(b), j+shortString); j+8 <= n; j += 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if m := ((q-ones)&^q | (bs-ones)&^bs) & highs; m != 0 {
			k := bits.TrailingZeros64(m) / 8
			or |= w & (1<<(8*k) - 1)
			if b[j+k] != '"' {
				return scanEscaped(b, i)
			}
			if or&highs != 0 {
				return j + k + 1, nonASCII
			}
			return j + k + 1, 0
		}
		or |= w
	}
	for n := min(len(b), j+8); j < n; j++ {
		c := b[j]
		or |= uint64(c)
		switch c {
		case '"':
			if or&highs != 0 {
				return j + 1, nonASCII
			}
			return j + 1, 0
		case '\\':
			return scanEscaped(b, i)
		}
	}
	k := bytes.IndexByte(b[j:], '"')
	if k < 0 {
		return -1, 0
	}
	q := j + k
	if bytes.IndexByte(b[j:q], '\\') >= 0 {
		return scanEscaped(b, i)
	}
	if or&highs != 0 || !isASCII(b[j:q]) {
		return q + 1, nonASCII
	}
	return q + 1, 0
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// shortString is how many bytes of a string scanString reads one by one
// before it searches.
const shortString = 24

// scanEscaped is scanString for a string with escapes: byte by byte.
func scanEscaped(b []byte, i int) (int, scan) {
	var (
		or    byte
		flags scan
	)
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		or |= c
		switch c {
		case '"':
			if or >= utf8.RuneSelf {
				flags |= nonASCII
			}
			return j + 1, flags
		case '\\':
			flags |= escaped
			j++ // the escaped byte cannot end the string
			if j < len(b) {
				or |= b[j]
			}
		}
	}
	return -1, flags
}

// isASCII reports whether every byte of s is below 0x80, sixteen at a time.
func isASCII(s []byte) bool {
	var or uint64
	for len(s) >= 16 {
		or |= binary.LittleEndian.Uint64(s) | binary.LittleEndian.Uint64(s[8:])
		s = s[16:]
	}
	if len(s) >= 8 {
		or |= binary.LittleEndian.Uint64(s)
		s = s[8:]
	}
	for _, c := range s {
		or |= uint64(c)
	}
	return or&0x8080808080808080 == 0
}

// valueEnd returns the index after the JSON value starting at b[i], -1 when
// it is not one, and what its scan found. The document was checked when it
// was collected; this only finds where values end.
func valueEnd(b []byte, i int) (int, scan) {
	if i >= len(b) {
		return -1, 0
	}
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{', '[':
		var (
			depth int
			or    byte
			flags scan
		)
		for j := i; j < len(b); {
			c := b[j]
			switch c {
			case '"':
				end, f := scanString(b, j)
				if end < 0 {
					return -1, 0
				}
				flags |= f
				j = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					if or >= utf8.RuneSelf {
						flags |= nonASCII
					}
					return j + 1, flags
				}
			}
			or |= c
			j++
		}
		return -1, 0
	default:
		var or byte
		j := i
	loop:
		for ; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				break loop
			}
			or |= b[j]
		}
		if j == i {
			return -1, 0
		}
		if or >= utf8.RuneSelf {
			return j, nonASCII
		}
		return j, 0
	}
}
