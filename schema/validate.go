package schema

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/fossil-events/fossil/fossil"
)

// MaxViolations caps the violations reported for one event; the last one
// then says how many more there were.
const MaxViolations = 100

// printer renders the validator's messages. It is safe for concurrent use.
var printer = message.NewPrinter(language.English)

// Validate checks an event's data against the schema registered for
// eventType. It returns nil when the type has no schema. Otherwise the data
// must be JSON: DataJSON, or DataString or DataBase64 whose bytes parse as
// JSON; no data at all (DataNone) is checked as JSON null. A failure is a
// [*fossil.SchemaViolationError] (wrapping fossil.ErrSchemaViolation) with
// location as its Location and one [fossil.Violation] per failing leaf
// keyword, sorted by pointer; data that is not JSON is one violation at the
// root.
//
// Validate does no I/O and is safe for concurrent use.
func (r *Registry) Validate(location, eventType string, kind fossil.DataKind, data []byte) error {
	c := (*r.schemas.Load())[eventType]
	if c == nil || c.schema == nil {
		return nil
	}
	var instance any // JSON null
	if kind != fossil.DataNone {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return &fossil.SchemaViolationError{
				Location:   location,
				Type:       eventType,
				Violations: []fossil.Violation{{Pointer: "", Message: notJSONMessage(kind, err)}},
			}
		}
		instance = v
	}
	err := c.schema.Validate(instance)
	if err == nil {
		return nil
	}
	return &fossil.SchemaViolationError{Location: location, Type: eventType, Violations: violations(err)}
}

func notJSONMessage(kind fossil.DataKind, err error) string {
	const why = "the type has a schema, so the data must be JSON"
	switch kind {
	case fossil.DataString:
		return fmt.Sprintf("%s, but the text does not parse as JSON: %s", why, err.Error())
	case fossil.DataBase64:
		return fmt.Sprintf("%s, but the binary data does not parse as JSON: %s", why, err.Error())
	default:
		return fmt.Sprintf("%s, but it is malformed: %s", why, err.Error())
	}
}

// violations flattens a validation error into its leaves: the keywords
// that failed, each at the instance location it failed on.
func violations(err error) []fossil.Violation {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []fossil.Violation{{Pointer: "", Message: err.Error()}}
	}
	var out []fossil.Violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, fossil.Violation{Pointer: pointer(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(printer)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	// The validator walks object members in map order; sort so the same
	// data always gets the same answer.
	slices.SortFunc(out, func(a, b fossil.Violation) int {
		return cmp.Or(cmp.Compare(a.Pointer, b.Pointer), cmp.Compare(a.Message, b.Message))
	})
	out = slices.Compact(out)
	if len(out) > MaxViolations {
		more := len(out) - (MaxViolations - 1)
		out = append(out[:MaxViolations-1], fossil.Violation{Pointer: "", Message: strconv.Itoa(more) + " more violations not listed"})
	}
	return out
}

// pointer renders an instance location as an RFC 6901 JSON pointer; the
// root is "".
func pointer(tokens []string) string {
	var sb strings.Builder
	for _, tok := range tokens {
		sb.WriteByte('/')
		if strings.ContainsAny(tok, "~/") {
			tok = strings.ReplaceAll(tok, "~", "~0")
			tok = strings.ReplaceAll(tok, "/", "~1")
		}
		sb.WriteString(tok)
	}
	return sb.String()
}
