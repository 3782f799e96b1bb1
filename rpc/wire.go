package rpc

import (
	"bytes"
	"encoding/base64"
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
// cost about as much as everything else a replay does. The bytes decode to
// exactly what [ToProto] returns (its tests hold the two equal); a document
// the encoder does not expect (not Fossil's compact form: duplicate
// members, escaped names, a non-string core attribute…) goes through
// ToProto and proto.Marshal instead. Not safe for concurrent use: it keeps
// its scratch buffers between events.
type wireEncoder struct {
	ce, ev, bin []byte
	exts        []member
}

// member is one member of a document: its name and its value as raw JSON
// (raw starts right after the colon, as ToProto captures data; val is raw
// without the whitespace before the value).
type member struct {
	name     []byte
	raw, val []byte
}

// appendEvent appends the protobuf encoding of e as a fossil.v1.Event
// (without a tag or length).
func (w *wireEncoder) appendEvent(b []byte, e *fossil.Event) ([]byte, error) {
	if out, ok := w.appendFast(b, e); ok {
		return out, nil
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
	var err error
	for _, e := range events {
		w.ev, err = w.appendEvent(w.ev[:0], e)
		if err != nil {
			return b, err
		}
		b = protowire.AppendTag(b, subscribeEvents, protowire.BytesType)
		b = protowire.AppendBytes(b, w.ev)
	}
	if cap(w.ev) > maxScratch {
		w.ev = nil
	}
	if cap(w.ce) > maxScratch {
		w.ce = nil
	}
	if cap(w.bin) > maxScratch {
		w.bin = nil
	}
	return b, nil
}

// appendFast is the encoder's own path; ok is false when the document
// needs ToProto's.
func (w *wireEncoder) appendFast(b []byte, e *fossil.Event) ([]byte, bool) {
	doc := e.Doc
	var (
		core                       [4][]byte // id, source, specversion, type: string contents
		seen                       uint16
		data, dataB64, timeV, ct   []byte
		hasData, hasB64, hasSchema bool
		schema                     []byte
	)
	w.exts = w.exts[:0]
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return b, false
	}
	i = skipSpace(doc, i+1)
	if i < len(doc) && doc[i] == '}' {
		i++
	} else {
		for {
			if i >= len(doc) || doc[i] != '"' {
				return b, false
			}
			end, escaped := stringEnd(doc, i)
			if end < 0 || escaped {
				return b, false
			}
			name := doc[i+1 : end-1]
			i = skipSpace(doc, end)
			if i >= len(doc) || doc[i] != ':' {
				return b, false
			}
			rawStart := i + 1
			vs := skipSpace(doc, rawStart)
			ve := valueEnd(doc, vs)
			if ve < 0 {
				return b, false
			}
			m := member{name: name, raw: doc[rawStart:ve], val: doc[vs:ve]}
			bit := uint16(0)
			switch string(name) {
			case "id":
				bit = 1 << 0
			case "source":
				bit = 1 << 1
			case "specversion":
				bit = 1 << 2
			case "type":
				bit = 1 << 3
			case "data":
				bit, data, hasData = 1<<4, m.raw, true
			case "data_base64":
				bit, hasB64 = 1<<5, true
			case "time":
				bit = 1 << 6
			case "dataschema":
				bit, hasSchema = 1<<7, true
			case "datacontenttype":
				bit = 1 << 8
			}
			if bit != 0 {
				if seen&bit != 0 {
					return b, false // a duplicate member: ToProto's rules
				}
				seen |= bit
			}
			switch {
			case bit != 0 && bit <= 1<<3:
				s, ok := plainString(m.val)
				if !ok {
					return b, false
				}
				core[bitIndex(bit)] = s
			case bit == 1<<5:
				s, ok := plainString(m.val)
				if !ok {
					return b, false
				}
				dataB64 = s
			case bit == 1<<6:
				s, ok := plainString(m.val)
				if !ok {
					return b, false
				}
				timeV = s
			case bit == 1<<7:
				s, ok := plainString(m.val)
				if !ok {
					return b, false
				}
				schema = s
			case bit == 1<<4:
			default:
				if bit == 1<<8 {
					if s, ok := plainString(m.val); ok {
						ct = s
					} else if len(m.val) > 0 && m.val[0] == '"' {
						return b, false // an escaped media type
					}
				}
				for _, x := range w.exts {
					if bytes.Equal(x.name, name) {
						return b, false
					}
				}
				w.exts = append(w.exts, m)
			}
			i = skipSpace(doc, ve)
			if i >= len(doc) {
				return b, false
			}
			if doc[i] == '}' {
				i++
				break
			}
			if doc[i] != ',' {
				return b, false
			}
			i = skipSpace(doc, i+1)
		}
	}
	if skipSpace(doc, i) != len(doc) {
		return b, false
	}

	// The CloudEvent, into w.ce.
	ce := w.ce[:0]
	for k, f := range [4]protowire.Number{ceID, ceSource, ceSpecVersion, ceType} {
		if s := core[k]; len(s) > 0 {
			if !utf8.Valid(s) {
				return b, false
			}
			ce = protowire.AppendTag(ce, f, protowire.BytesType)
			ce = protowire.AppendBytes(ce, s)
		}
	}
	for _, x := range w.exts {
		if !utf8.Valid(x.name) {
			return b, false
		}
		var ok bool
		if ce, ok = appendAttribute(ce, x.name, x.val); !ok {
			return b, false
		}
	}
	if hasSchema {
		if !utf8.Valid(schema) {
			return b, false
		}
		ce = appendMapEntry(ce, "dataschema", attrURI, protowire.BytesType, func(v []byte) []byte {
			return protowire.AppendBytes(v, schema)
		})
	}
	if len(timeV) > 0 {
		t, err := time.Parse(time.RFC3339Nano, string(timeV))
		if err != nil {
			return b, false
		}
		secs, nanos := t.Unix(), int32(t.Nanosecond())
		var ts [24]byte
		tb := ts[:0]
		if secs != 0 {
			tb = protowire.AppendTag(tb, tsSeconds, protowire.VarintType)
			tb = protowire.AppendVarint(tb, uint64(secs))
		}
		if nanos != 0 {
			tb = protowire.AppendTag(tb, tsNanos, protowire.VarintType)
			tb = protowire.AppendVarint(tb, uint64(nanos))
		}
		ce = appendMapEntry(ce, "time", attrTimestamp, protowire.BytesType, func(v []byte) []byte {
			return protowire.AppendBytes(v, tb)
		})
	}
	switch {
	case hasB64 && len(dataB64) > 0:
		bin, err := base64.StdEncoding.AppendDecode(w.bin[:0], dataB64)
		if err != nil {
			return b, false
		}
		w.bin = bin
		ce = protowire.AppendTag(ce, ceBinaryData, protowire.BytesType)
		ce = protowire.AppendBytes(ce, bin)
	case hasData && len(data) > 0 && data[0] == '"' && len(ct) > 0 && !isJSONMedia(string(ct)):
		s, ok := plainString(data)
		if !ok || !utf8.Valid(s) {
			return b, false
		}
		ce = protowire.AppendTag(ce, ceTextData, protowire.BytesType)
		ce = protowire.AppendBytes(ce, s)
	case hasData:
		if !utf8.Valid(data) {
			return b, false
		}
		ce = protowire.AppendTag(ce, ceTextData, protowire.BytesType)
		ce = protowire.AppendBytes(ce, data)
	}
	w.ce = ce

	// The Event around it.
	if !utf8.ValidString(e.Stream) {
		return b, false
	}
	b = protowire.AppendTag(b, eventCloudEvent, protowire.BytesType)
	b = protowire.AppendBytes(b, ce)
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
		if !utf8.ValidString(c) {
			return b, false
		}
		b = protowire.AppendTag(b, eventExpectAck, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	return b, true
}

func bitIndex(bit uint16) int {
	switch bit {
	case 1 << 0:
		return 0
	case 1 << 1:
		return 1
	case 1 << 2:
		return 2
	default:
		return 3
	}
}

// appendAttribute appends one entry of the attributes map for an
// extension (or datacontenttype, subject) typed by its JSON form, as
// attributeValue does.
func appendAttribute(b, name, val []byte) ([]byte, bool) {
	if len(val) == 0 {
		return b, false
	}
	var (
		field protowire.Number
		typ   protowire.Type
		body  []byte
		n     uint64
	)
	switch c := val[0]; {
	case c == '"':
		s, ok := plainString(val)
		if !ok || !utf8.Valid(s) {
			return b, false
		}
		field, typ, body = attrString, protowire.BytesType, s
	case c == 't' || c == 'f':
		switch string(val) {
		case "true":
			n = 1
		case "false":
		default:
			return b, false
		}
		field, typ = attrBoolean, protowire.VarintType
	case c == '-' || (c >= '0' && c <= '9'):
		if i, err := strconv.ParseInt(string(val), 10, 32); err == nil {
			field, typ, n = attrInteger, protowire.VarintType, uint64(int64(i))
		} else {
			field, typ, body = attrString, protowire.BytesType, val
		}
	default: // null, objects and arrays: their JSON text
		if !utf8.Valid(val) {
			return b, false
		}
		field, typ, body = attrString, protowire.BytesType, val
	}
	// entry: key (1), value (2) = CloudEventAttributeValue{field}
	vsize := protowire.SizeTag(field)
	if typ == protowire.VarintType {
		vsize += protowire.SizeVarint(n)
	} else {
		vsize += protowire.SizeBytes(len(body))
	}
	size := protowire.SizeTag(mapEntryKey) + protowire.SizeBytes(len(name)) +
		protowire.SizeTag(mapEntryValue) + protowire.SizeBytes(vsize)
	b = protowire.AppendTag(b, ceAttributes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
	b = protowire.AppendBytes(b, name)
	b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(vsize))
	b = protowire.AppendTag(b, field, typ)
	if typ == protowire.VarintType {
		return protowire.AppendVarint(b, n), true
	}
	return protowire.AppendBytes(b, body), true
}

// appendMapEntry appends an entry of the attributes map whose value has
// one field of wire type typ, written by value.
func appendMapEntry(b []byte, name string, field protowire.Number, typ protowire.Type, value func([]byte) []byte) []byte {
	var scratch [64]byte
	v := protowire.AppendTag(scratch[:0], field, typ)
	v = value(v)
	size := protowire.SizeTag(mapEntryKey) + protowire.SizeBytes(len(name)) +
		protowire.SizeTag(mapEntryValue) + protowire.SizeBytes(len(v))
	b = protowire.AppendTag(b, ceAttributes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// plainString returns the contents of a JSON string without escapes.
func plainString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	s := v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	return s, true
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

// stringEnd returns the index after the JSON string starting at b[i] (a
// quote) and whether it holds escapes; -1 when it does not end.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1, false
		}
		q := j + k
		if bytes.IndexByte(b[j:q], '\\') >= 0 {
			escaped = true
			// The quote ends the string unless an odd run of
			// backslashes precedes it.
			n := 0
			for p := q - 1; p > i && b[p] == '\\'; p-- {
				n++
			}
			if n%2 == 1 {
				j = q + 1
				continue
			}
		}
		return q + 1, escaped
	}
	return -1, false
}

// valueEnd returns the index after the JSON value starting at b[i], -1 when
// it is not one. The document was checked when it was collected; this only
// finds where values end.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return -1
				}
				return j
			}
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
