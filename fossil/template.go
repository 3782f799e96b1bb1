package fossil

import (
	"strings"

	"github.com/yosida95/uritemplate/v3"
)

// Template is a compiled RFC 6570 stream template such as "visits/{id}",
// "orders/{+rest}" or a literal stream name.
//
// Templates describe URIs, while stream names may hold any UTF-8 text. To
// match, a stream name is first percent-encoded: every byte that is not an
// RFC 3986 unreserved or reserved character (spaces, '%', non-ASCII text…)
// becomes %XX. In a template, literal text is treated the same way, so
// "users/josé/{id}" matches "users/josé/1"; a literal '%' in a stream name
// is written %25 in a template.
type Template struct {
	raw     string
	tmpl    *uritemplate.Template
	encoded string // raw with its literal text percent-encoded
	prefix  string // literal text before the first expression, as a stream name
	literal bool   // no expressions at all
	// segs, when non-nil, matches the template without uritemplate's
	// general (and much slower) matcher; set for templates made of literal
	// text and {var} or {+var} expressions.
	segs []segment
}

// segment is literal text or a single-variable expression.
type segment struct {
	lit      string // encoded literal text, when variable is false
	variable bool
	reserved bool // {+var}: may capture reserved characters too
}

// ParseTemplate compiles a stream template. An empty or malformed template
// is an [*InvalidError].
func ParseTemplate(location, raw string) (*Template, error) {
	if raw == "" {
		return nil, Invalid(location, "stream template is empty")
	}
	if len(raw) > 4096 {
		return nil, Invalid(location, "stream template is longer than 4096 bytes")
	}
	encoded := encodeTemplateLiterals(raw)
	tm, err := uritemplate.New(encoded)
	if err != nil {
		return nil, Invalid(location, "invalid stream template %q: %s", truncate(raw, 64), err.Error())
	}
	t := &Template{raw: raw, tmpl: tm, encoded: encoded}
	i := strings.IndexByte(encoded, '{')
	if i < 0 {
		t.literal = true
		t.prefix, _ = PercentDecode(encoded)
		return t, nil
	}
	t.prefix, _ = PercentDecode(encoded[:i])
	t.segs = simpleSegments(encoded)
	return t, nil
}

// simpleSegments splits an encoded template into literal text and {var} or
// {+var} expressions; it returns nil when any expression is of another kind.
func simpleSegments(encoded string) []segment {
	var segs []segment
	seen := map[string]bool{}
	for encoded != "" {
		i := strings.IndexByte(encoded, '{')
		if i < 0 {
			return append(segs, segment{lit: encoded})
		}
		if i > 0 {
			segs = append(segs, segment{lit: encoded[:i]})
		}
		j := strings.IndexByte(encoded[i:], '}')
		if j < 0 {
			return nil
		}
		name := encoded[i+1 : i+j]
		seg := segment{variable: true}
		if strings.HasPrefix(name, "+") {
			seg.reserved, name = true, name[1:]
		}
		if name == "" || !isVarName(name) || seen[name] {
			return nil // a repeated variable captures a list: not a simple shape
		}
		seen[name] = true
		if len(segs) > 0 && segs[len(segs)-1].variable {
			return nil // adjacent variables: leave the ambiguity to uritemplate
		}
		segs = append(segs, seg)
		encoded = encoded[i+j+1:]
	}
	return segs
}

// matchSegments matches s against segs; every variable captures at least
// one character (a %XX triplet is one character), a simple variable only
// unreserved characters and triplets.
func matchSegments(segs []segment, s string) bool {
	if len(segs) == 0 {
		return s == ""
	}
	seg := segs[0]
	if !seg.variable {
		rest, ok := strings.CutPrefix(s, seg.lit)
		return ok && matchSegments(segs[1:], rest)
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			i += 3
		case isUnreserved(c) || seg.reserved && c != '%':
			i++
		default:
			return false
		}
		if matchSegments(segs[1:], s[i:]) {
			return true
		}
	}
	return false
}

// String returns the template as written.
func (t *Template) String() string { return t.raw }

// Literal reports whether the template has no expressions, so that it names
// exactly one stream, [Template.Prefix].
func (t *Template) Literal() bool { return t.literal }

// Prefix returns the literal text before the first expression, as a stream
// name; every stream the template matches starts with it. For a literal
// template it is the whole stream name.
func (t *Template) Prefix() string { return t.prefix }

// Match reports whether stream matches the template. Every variable must
// capture a non-empty single value: empty captures and list or key-value
// captures do not match.
func (t *Template) Match(stream string) bool {
	if !strings.HasPrefix(stream, t.prefix) {
		return false
	}
	if t.literal {
		return stream == t.prefix
	}
	enc := encodeStream(stream)
	if t.segs != nil {
		return matchSegments(t.segs, enc)
	}
	vals := t.tmpl.Match(enc)
	if vals == nil {
		return false
	}
	for _, v := range vals {
		if v.T != uritemplate.ValueTypeString || v.String() == "" {
			return false
		}
	}
	return true
}

// Templates is a set of templates; a stream matches when any one matches.
type Templates []*Template

// ParseTemplates compiles each raw template; the first error wins.
func ParseTemplates(location string, raws []string) (Templates, error) {
	out := make(Templates, 0, len(raws))
	for _, raw := range raws {
		t, err := ParseTemplate(location, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Match reports whether any template matches stream.
func (ts Templates) Match(stream string) bool {
	for _, t := range ts {
		if t.Match(stream) {
			return true
		}
	}
	return false
}

// isURIChar reports whether c may appear as-is in a URI (RFC 3986
// unreserved or reserved), '%' excluded.
func isURIChar(c byte) bool { return uriChars[c] }

// uriChars is isURIChar as a table: matching runs it on every byte of every
// event's stream name, once per live subscriber.
var uriChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isUnreserved(byte(c)) || strings.IndexByte(":/?#[]@!$&'()*+,;=", byte(c)) >= 0
	}
	return t
}()

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

const upperHex = "0123456789ABCDEF"

// encodeStream percent-encodes the bytes of a stream name that are not URI
// characters, and '%'.
func encodeStream(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isURIChar(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isURIChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

// encodeTemplateLiterals percent-encodes the literal text of a template
// (outside braces) like encodeStream, except that existing %XX triplets are
// kept (with upper-case hex digits).
func encodeTemplateLiterals(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	depth := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '{':
			depth++
			b.WriteByte(c)
		case c == '}':
			if depth > 0 {
				depth--
			}
			b.WriteByte(c)
		case depth > 0 || isURIChar(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(raw) && isHexDigit(raw[i+1]) && isHexDigit(raw[i+2]):
			b.WriteByte('%')
			b.WriteByte(upper(raw[i+1]))
			b.WriteByte(upper(raw[i+2]))
			i += 2
		default:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		}
	}
	return b.String()
}

// PercentDecode decodes the %XX triplets of s. A '%' that does not start
// a triplet of two hex digits is kept as it is, and ok reports whether there
// was none. It is the one percent-decoder: lenient for templates, strict
// (requiring ok) for CloudEvents header values.
func PercentDecode(s string) (out string, ok bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	ok = true
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 < len(s) {
				if v, hex := DecodeHexPair(s[i+1], s[i+2]); hex {
					b.WriteByte(v)
					i += 2
					continue
				}
			}
			ok = false
		}
		b.WriteByte(s[i])
	}
	return b.String(), ok
}

// isVarName reports whether s is a plain RFC 6570 variable name without
// modifiers (no explode, prefix or list).
func isVarName(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false // a leading '.' is the label operator
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// DecodeHexPair decodes the two hex digits of a %XX triplet.
func DecodeHexPair(hi, lo byte) (byte, bool) {
	if !isHexDigit(hi) || !isHexDigit(lo) {
		return 0, false
	}
	return hexVal(hi)<<4 | hexVal(lo), true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
