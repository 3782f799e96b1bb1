package collector

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Structured and batched bodies are read in one pass: scanner validates
// the JSON text (RFC 8259, UTF-8 included, as json.Valid and utf8.Valid
// together decide) while it cuts a batch into its elements and each event
// object into its members. Nothing is decoded by reflection, and no byte
// is looked at twice except the values the decoder then takes (strings
// with escapes, numbers of extensions). FuzzScanner holds it to
// encoding/json.

// maxDepth is encoding/json's nesting limit, which the scanner keeps so
// that it accepts exactly what json.Valid accepts.
const maxDepth = 10000

// member is one member of an event object: where its name (a string
// literal, quotes included) and its value (JSON text) are in the scanned
// text.
type member struct {
	nameAt, nameEnd int
	rawAt, rawEnd   int
	nameEsc         bool // the name has escapes
	esc             bool // the value is a string with escapes
	space           bool // the value holds white space outside strings
}

// element is one element of a batch; its members are
// members[first:first+n] when it is an object.
type element struct {
	object   bool
	first, n int
}

type scanner struct {
	b       []byte
	i       int
	depth   int
	space   bool // white space was skipped since it was last cleared
	members []member
}

// validJSON reports whether b is one JSON value in UTF-8. json.Valid alone
// accepts invalid UTF-8 inside strings, which RFC 8259 (section 8.1)
// forbids and which PostgreSQL's jsonb refuses.
func validJSON(b []byte) bool {
	_, ok := scanValue(b)
	return ok
}

// scanValue validates the JSON text b (one value, white space around it
// allowed) and reports whether it holds white space outside strings.
func scanValue(b []byte) (space, ok bool) {
	s := scanner{b: b}
	s.ws()
	if !s.value() {
		return false, false
	}
	s.ws()
	return s.space, s.i == len(b)
}

// scanObject validates the JSON text b, which must be one object without
// surrounding white space, and returns its members.
func scanObject(b []byte) ([]member, bool) {
	s := scanner{b: b, members: make([]member, 0, 12)}
	if !s.object(true) || s.i != len(b) {
		return nil, false
	}
	return s.members, true
}

// scanArray validates the JSON text b, which must be one array without
// surrounding white space, and returns its elements; the members of the
// elements that are objects are in the returned slice.
func scanArray(b []byte) ([]element, []member, bool) {
	s := scanner{b: b, members: make([]member, 0, 64)}
	var elems []element
	if s.i >= len(b) || b[0] != '[' {
		return nil, nil, false
	}
	s.i++
	s.depth++
	s.ws()
	if s.i < len(b) && b[s.i] == ']' {
		s.i++
		return elems, s.members, s.i == len(b)
	}
	for {
		e := element{first: len(s.members)}
		if s.i < len(b) && b[s.i] == '{' {
			e.object = true
			if !s.object(true) {
				return nil, nil, false
			}
			e.n = len(s.members) - e.first
		} else if !s.value() {
			return nil, nil, false
		}
		elems = append(elems, e)
		s.ws()
		if s.i >= len(b) {
			return nil, nil, false
		}
		switch b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return elems, s.members, s.i == len(b)
		default:
			return nil, nil, false
		}
	}
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.space = true
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.object(false)
	case c == '[':
		return s.array()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// object scans the object at s.i; with record set, its members are
// appended to s.members.
func (s *scanner) object(record bool) bool {
	s.depth++
	if s.depth > maxDepth {
		return false
	}
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		nameStart := s.i
		nameEsc, ok := s.str()
		if !ok {
			return false
		}
		nameEnd := s.i
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		start := s.i
		if record {
			s.space = false
		}
		var esc bool
		if s.i < len(s.b) && s.b[s.i] == '"' {
			esc, ok = s.str()
		} else {
			ok = s.value()
		}
		if !ok {
			return false
		}
		if record {
			s.members = append(s.members, member{nameAt: nameStart, nameEnd: nameEnd, rawAt: start, rawEnd: s.i, nameEsc: nameEsc, esc: esc, space: s.space})
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array() bool {
	s.depth++
	if s.depth > maxDepth {
		return false
	}
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// str scans the string literal at s.i and reports whether it has escapes.
func (s *scanner) str() (esc, ok bool) {
	b := s.b
	i := s.i + 1
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				s.i = i + 1
				return esc, true
			case c == '\\':
				esc = true
				if i+1 >= len(b) {
					return false, false
				}
				switch b[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
				case 'u':
					if i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
						return false, false
					}
					i += 6
				default:
					return false, false
				}
			case c < 0x20:
				return false, false
			default:
				i++
			}
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return false, false
		}
		i += size
	}
	return false, false
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func (s *scanner) number() bool {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	}
	s.i = i
	return true
}

// malformed explains why b is not valid JSON, with encoding/json's words.
func malformed(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err.Error()
	}
	if !utf8.Valid(b) {
		return "the JSON text is not valid UTF-8"
	}
	return "invalid JSON"
}
