package fossil

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
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
	var meta struct {
		Number    *int64  `json:"fossileventnumber"`
		Sequence  *int64  `json:"fossilsequenceinstream"`
		Stream    *string `json:"fossilstream"`
		ExpectAck string  `json:"fossilexpectack"`
	}
	tail := append([]byte{'{'}, b[i+1:]...)
	if err := json.Unmarshal(tail, &meta); err != nil {
		return nil, Invalid(location, "fossil extensions: %s", jsonMessage(err))
	}
	if meta.Number == nil || meta.Sequence == nil || meta.Stream == nil {
		return nil, Invalid(location, "%s, %s and %s are required", ExtEventNumber, ExtSequenceInStream, ExtStream)
	}
	e := &Event{Number: *meta.Number, Stream: *meta.Stream, Sequence: *meta.Sequence}
	if meta.ExpectAck != "" {
		e.ExpectAck = strings.Split(meta.ExpectAck, ",")
	}
	e.Doc = append(append(make([]byte, 0, i+1), b[:i]...), '}')
	var attrs struct {
		SpecVersion string  `json:"specversion"`
		ID          string  `json:"id"`
		Source      string  `json:"source"`
		Type        string  `json:"type"`
		Subject     *string `json:"subject"`
		Time        *string `json:"time"`
	}
	if err := json.Unmarshal(e.Doc, &attrs); err != nil {
		return nil, Invalid(location, "event document: %s", jsonMessage(err))
	}
	switch {
	case attrs.SpecVersion != "1.0":
		return nil, Invalid(location, "specversion must be 1.0")
	case attrs.ID == "" || attrs.Source == "" || attrs.Type == "":
		return nil, Invalid(location, "id, source and type are required")
	case e.Number < 1 || e.Sequence < 1:
		return nil, Invalid(location, "%s and %s must be positive", ExtEventNumber, ExtSequenceInStream)
	}
	if err := ValidateStream(location+"."+ExtStream, e.Stream); err != nil {
		return nil, err
	}
	if bytes.Contains(e.Doc, []byte(`"`+ReservedPrefix)) {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(e.Doc, &keys); err != nil {
			return nil, Invalid(location, "event document: %s", jsonMessage(err))
		}
		for k := range keys {
			if strings.HasPrefix(k, ReservedPrefix) {
				return nil, Invalid(location, "%s: the event document holds a reserved fossil* attribute", k)
			}
		}
	}
	e.ID, e.Source, e.Type = attrs.ID, attrs.Source, attrs.Type
	if attrs.Subject != nil {
		e.Subject = *attrs.Subject
	}
	if attrs.Time != nil {
		t, err := time.Parse(time.RFC3339Nano, *attrs.Time)
		if err != nil {
			return nil, Invalid(location+".time", "not an RFC 3339 time")
		}
		e.Time = t.UTC()
	}
	var compact bytes.Buffer
	compact.Grow(len(e.Doc))
	if json.Compact(&compact, e.Doc) != nil || !bytes.Equal(compact.Bytes(), e.Doc) {
		return nil, Invalid(location, "the event document is not compact JSON")
	}
	if !bytes.Equal(e.AppendJSON(make([]byte, 0, len(b))), b) {
		return nil, Invalid(location, "not in the form Fossil serves (attributes after the fossil extensions, or not compact)")
	}
	return e, nil
}

func jsonMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}
