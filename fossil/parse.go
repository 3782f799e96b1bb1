package fossil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
)

// servedSuffix starts the fossil* extensions that [Event.AppendJSON]
// appends after the stored document.
var servedSuffix = []byte(`,"` + ExtEventNumber + `":`)

// ParseJSON is the inverse of [Event.AppendJSON]: it takes one event as the
// server serves it (SSE, reads, `fossil export`) and returns the stored
// event, its document without the fossil* extensions. It accepts exactly
// what AppendJSON produces, so re-rendering the result gives b back byte for
// byte; anything else is an [*InvalidError] at location. The attributes
// kept in columns (id, source, type, subject, time) are read from the
// document. CommittedAt is left zero.
func ParseJSON(location string, b []byte) (*Event, error) {
	b = bytes.TrimRight(b, "\r\n")
	i := bytes.LastIndex(b, servedSuffix)
	if i <= 0 || b[0] != '{' {
		return nil, Invalid(location, "not an event as Fossil serves it: no %s extension after the document", ExtEventNumber)
	}
	e := &Event{}
	tail := b[i+1:]
	if err := parseServedTail(tail, e); err != nil {
		return nil, Invalid(location, "fossil extensions: %s", err.Error())
	}
	e.Doc = append(append(make([]byte, 0, i+1), b[:i]...), '}')
	// One strict pass (json.Valid), one pass that checks the document is
	// compact, and one iteration over its members: every event of an
	// import goes through here, so the document is not decoded into maps
	// or structs.
	if !json.Valid(e.Doc) {
		var v any
		err := json.Unmarshal(e.Doc, &v)
		return nil, Invalid(location, "event document: %s", jsonMessage(err))
	}
	if !isCompact(e.Doc) {
		return nil, Invalid(location, "the event document is not compact JSON")
	}
	var (
		specVersion, timeText string
		hasTime               bool
		reserved              string
	)
	it := leafJSON.BorrowIterator(e.Doc)
	defer leafJSON.ReturnIterator(it)
	ok := it.ReadObjectCB(func(it *jsoniter.Iterator, name string) bool {
		str := func() string {
			if it.WhatIsNext() != jsoniter.StringValue {
				it.Skip()
				it.ReportError("attribute", name+" is not a string")
				return ""
			}
			return it.ReadString()
		}
		switch name {
		case "specversion":
			specVersion = str()
		case "id":
			e.ID = str()
		case "source":
			e.Source = str()
		case "type":
			e.Type = str()
		case "subject":
			e.Subject = str()
		case "time":
			timeText, hasTime = str(), true
		default:
			if strings.HasPrefix(name, ReservedPrefix) && reserved == "" {
				reserved = name
			}
			it.Skip()
		}
		return it.Error == nil
	})
	if !ok || (it.Error != nil && it.Error != io.EOF) {
		return nil, Invalid(location, "event document: %v", it.Error)
	}
	switch {
	case specVersion != "1.0":
		return nil, Invalid(location, "specversion must be 1.0")
	case e.ID == "" || e.Source == "" || e.Type == "":
		return nil, Invalid(location, "id, source and type are required")
	case e.Number < 1 || e.Sequence < 1:
		return nil, Invalid(location, "%s and %s must be positive", ExtEventNumber, ExtSequenceInStream)
	case reserved != "":
		return nil, Invalid(location, "%s: the event document holds a reserved fossil* attribute", reserved)
	}
	if err := ValidateStream(location+"."+ExtStream, e.Stream); err != nil {
		return nil, err
	}
	if hasTime {
		t, err := time.Parse(time.RFC3339Nano, timeText)
		if err != nil {
			return nil, Invalid(location+".time", "not an RFC 3339 time")
		}
		e.Time = t.UTC()
	}
	if !bytes.Equal(e.AppendJSON(make([]byte, 0, len(b))), b) {
		return nil, Invalid(location, "not in the form Fossil serves (attributes after the fossil extensions, or not compact)")
	}
	return e, nil
}

// parseServedTail reads the fossil* members that [Event.AppendJSON]
// appends ({"fossileventnumber":…} without its opening brace) into e.
// It is lenient about their form: ParseJSON re-renders the event and
// compares, which only the exact form passes.
func parseServedTail(tail []byte, e *Event) error {
	var number, sequence, stream bool
	it := leafJSON.BorrowIterator(append([]byte{'{'}, tail...))
	defer leafJSON.ReturnIterator(it)
	ok := it.ReadObjectCB(func(it *jsoniter.Iterator, name string) bool {
		switch name {
		case ExtEventNumber:
			e.Number, number = it.ReadInt64(), true
		case ExtSequenceInStream:
			e.Sequence, sequence = it.ReadInt64(), true
		case ExtStream:
			e.Stream, stream = it.ReadString(), true
		case ExtExpectAck:
			if s := it.ReadString(); s != "" {
				e.ExpectAck = strings.Split(s, ",")
			}
		default:
			it.Skip()
		}
		return it.Error == nil
	})
	if !ok || (it.Error != nil && it.Error != io.EOF) {
		return fmt.Errorf("%v", it.Error)
	}
	if !number || !sequence || !stream {
		return fmt.Errorf("%s, %s and %s are required", ExtEventNumber, ExtSequenceInStream, ExtStream)
	}
	return nil
}

// isCompact reports whether the valid JSON text b has no white space
// outside its strings.
func isCompact(b []byte) bool {
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}

func jsonMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}
