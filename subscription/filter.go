package subscription

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	cesql "github.com/cloudevents/sdk-go/sql/v2"
	cesqlparser "github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/fossil-events/fossil/fossil"
)

// Candidate is an event being matched and delivered: the stored event and
// its CloudEvent form with the fossil extensions.
type Candidate struct {
	Event *fossil.Event
	CE    event.Event
}

// NewCandidate parses a stored event. The fossil extensions are integers
// (strings beyond the CloudEvents 32-bit Integer range) and strings.
func NewCandidate(e *fossil.Event) (*Candidate, error) {
	c := &Candidate{Event: e, CE: event.New()}
	if err := json.Unmarshal(e.Doc, &c.CE); err != nil {
		return nil, fmt.Errorf("event %d: stored document: %w", e.Number, err)
	}
	c.CE.SetExtension(fossil.ExtEventNumber, cloudInt(e.Number))
	c.CE.SetExtension(fossil.ExtSequenceInStream, cloudInt(e.Sequence))
	c.CE.SetExtension(fossil.ExtStream, e.Stream)
	if len(e.ExpectAck) > 0 {
		c.CE.SetExtension(fossil.ExtExpectAck, strings.Join(e.ExpectAck, ","))
	}
	return c, nil
}

func cloudInt(n int64) any {
	if n <= math.MaxInt32 {
		return int32(n)
	}
	return strconv.FormatInt(n, 10)
}

// Attr returns an attribute's value as a string (integers in decimal), and
// whether the event has it.
func (c *Candidate) Attr(name string) (string, bool) {
	e := c.Event
	switch name {
	case "specversion":
		return "1.0", true
	case "id":
		return e.ID, true
	case "source":
		return e.Source, true // as the client sent it, not as sdk-go re-encodes it
	case "type":
		return e.Type, true
	case "subject":
		return e.Subject, e.Subject != ""
	case fossil.ExtEventNumber:
		return strconv.FormatInt(e.Number, 10), true
	case fossil.ExtSequenceInStream:
		return strconv.FormatInt(e.Sequence, 10), true
	case fossil.ExtStream:
		return e.Stream, true
	case "datacontenttype":
		v := c.CE.DataContentType()
		return v, v != ""
	case "dataschema":
		v := c.CE.DataSchema()
		return v, v != ""
	case "time":
		if c.CE.Time().IsZero() {
			return "", false
		}
		s, err := types.Format(types.Timestamp{Time: c.CE.Time()})
		return s, err == nil
	}
	v, ok := c.CE.Extensions()[name]
	if !ok {
		return "", false
	}
	s, err := types.Format(v)
	return s, err == nil
}

// Filter decides whether an event matches.
type Filter interface {
	Match(c *Candidate) bool
}

type allFilter []Filter

func (f allFilter) Match(c *Candidate) bool {
	for _, g := range f {
		if !g.Match(c) {
			return false
		}
	}
	return true
}

type anyFilter []Filter

func (f anyFilter) Match(c *Candidate) bool {
	for _, g := range f {
		if g.Match(c) {
			return true
		}
	}
	return false
}

type notFilter struct{ f Filter }

func (f notFilter) Match(c *Candidate) bool { return !f.f.Match(c) }

type typesFilter []string

func (f typesFilter) Match(c *Candidate) bool { return slices.Contains(f, c.Event.Type) }

type exactFilter struct {
	attrs map[string]string
	op    func(value, want string) bool // nil: equality
}

func (f exactFilter) Match(c *Candidate) bool {
	for name, want := range f.attrs {
		v, ok := c.Attr(name)
		if !ok {
			return false
		}
		if f.op == nil {
			if v != want {
				return false
			}
		} else if !f.op(v, want) {
			return false
		}
	}
	return true
}

type sqlFilter struct{ expr cesql.Expression }

// Match evaluates the expression; an evaluation error (a missing
// attribute, a failed cast) does not match, as CESQL says.
func (f sqlFilter) Match(c *Candidate) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	v, err := f.expr.Evaluate(c.CE)
	if err != nil {
		return false
	}
	b, isBool := v.(bool)
	return isBool && b
}

// parseMu serialises CESQL parsing: the ANTLR runtime's shared DFA cache
// is not safe for concurrent parsers.
var parseMu sync.Mutex

// ParseCESQL parses a CESQL expression; the parser panics on some invalid
// input, which becomes an [*fossil.InvalidError] like any parse error.
func ParseCESQL(location, src string) (expr cesql.Expression, err error) {
	if strings.TrimSpace(src) == "" {
		return nil, fossil.Invalid(location, "the CESQL expression is empty")
	}
	if len(src) > 4096 {
		return nil, fossil.Invalid(location, "the CESQL expression is longer than 4096 bytes")
	}
	parseMu.Lock()
	defer parseMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			expr, err = nil, fossil.Invalid(location, "the CESQL expression does not parse")
		}
	}()
	expr, err = cesqlparser.Parse(src)
	if err != nil {
		return nil, fossil.Invalid(location, "the CESQL expression does not parse: %s", err.Error())
	}
	if expr == nil {
		return nil, fossil.Invalid(location, "the CESQL expression does not parse")
	}
	return expr, nil
}

var dialects = []string{"all", "any", "cesql", "exact", "not", "prefix", "sql", "suffix"}

// parseFilter compiles one filter object such as {"exact": {"type": "x"}}.
func parseFilter(loc string, raw json.RawMessage) (Filter, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, fossil.Invalid(loc, "a filter must be an object with one dialect (%s)", strings.Join(dialects, ", "))
	}
	if len(obj) != 1 {
		return nil, fossil.Invalid(loc, "a filter must have exactly one dialect (%s)", strings.Join(dialects, ", "))
	}
	for dialect, v := range obj {
		at := loc + "." + dialect
		switch dialect {
		case "exact", "prefix", "suffix":
			var attrs map[string]json.RawMessage
			if err := json.Unmarshal(v, &attrs); err != nil || len(attrs) == 0 {
				return nil, fossil.Invalid(at, "%s needs an object of attribute names to string values", dialect)
			}
			f := exactFilter{attrs: make(map[string]string, len(attrs))}
			for name, rv := range attrs {
				var s string
				if err := json.Unmarshal(rv, &s); err != nil || s == "" {
					return nil, fossil.Invalid(at+"."+name, "the value must be a non-empty string")
				}
				if !event.IsExtensionNameValid(name) || strings.ToLower(name) != name {
					return nil, fossil.Invalid(at+"."+name, "not a CloudEvents attribute name (lower-case letters and digits)")
				}
				f.attrs[name] = s
			}
			switch dialect {
			case "prefix":
				f.op = strings.HasPrefix
			case "suffix":
				f.op = strings.HasSuffix
			}
			return f, nil
		case "all", "any":
			var list []json.RawMessage
			if err := json.Unmarshal(v, &list); err != nil {
				return nil, fossil.Invalid(at, "%s needs an array of filters", dialect)
			}
			if len(list) == 0 {
				return nil, fossil.Invalid(at, "%s must not be empty", dialect)
			}
			fs := make([]Filter, 0, len(list))
			for i, item := range list {
				f, err := parseFilter(fmt.Sprintf("%s[%d]", at, i), item)
				if err != nil {
					return nil, err
				}
				fs = append(fs, f)
			}
			if dialect == "all" {
				return allFilter(fs), nil
			}
			return anyFilter(fs), nil
		case "not":
			f, err := parseFilter(at, v)
			if err != nil {
				return nil, err
			}
			return notFilter{f}, nil
		case "sql", "cesql":
			var src string
			if err := json.Unmarshal(v, &src); err != nil {
				return nil, fossil.Invalid(at, "%s needs a CESQL expression as a string", dialect)
			}
			expr, err := ParseCESQL(at, src)
			if err != nil {
				return nil, err
			}
			return sqlFilter{expr}, nil
		default:
			return nil, fossil.Invalid(loc, "unknown filter dialect %q (known: %s)", dialect, strings.Join(dialects, ", "))
		}
	}
	panic("unreachable")
}
