package fossil_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

// templateTests are the matching rules of api.md "Reading live": RFC 6570
// templates, several OR-ed, where every variable must capture one
// non-empty value.
var templateTests = []struct {
	name      string
	templates []string
	stream    string
	want      bool
}{
	// A simple variable captures one path segment.
	{"VariableMatches", []string{"visits/{id}"}, "visits/1", true},
	{"VariableUnreservedCharacters", []string{"visits/{id}"}, "visits/a-b_c.d~9", true},
	{"VariableEmptyCapture", []string{"visits/{id}"}, "visits/", false},
	{"VariableNoSlash", []string{"visits/{id}"}, "visits/1/2", false},
	{"VariableMissingSegment", []string{"visits/{id}"}, "visits", false},
	{"VariableOtherPrefix", []string{"visits/{id}"}, "visitors/1", false},
	{"VariablePrefixOnly", []string{"visits/{id}"}, "xvisits/1", false},
	{"VariableReservedCharacter", []string{"visits/{id}"}, "visits/a?b", false},
	{"VariableCommaIsAList", []string{"visits/{id}"}, "visits/1,2", false},
	{"TwoVariables", []string{"a/{x}/b/{y}"}, "a/1/b/2", true},
	{"TwoVariablesOneEmpty", []string{"a/{x}/b/{y}"}, "a/1/b/", false},
	{"TwoVariablesFirstEmpty", []string{"a/{x}/b/{y}"}, "a//b/2", false},
	{"VariableSuffix", []string{"{kind}/latest"}, "orders/latest", true},
	{"VariableSuffixMismatch", []string{"{kind}/latest"}, "orders/first", false},

	// Reserved expansion spans segments.
	{"ReservedMatchesSegments", []string{"orders/{+rest}"}, "orders/a/b", true},
	{"ReservedMatchesOneSegment", []string{"orders/{+rest}"}, "orders/a", true},
	{"ReservedEmptyCapture", []string{"orders/{+rest}"}, "orders/", false},
	{"ReservedMissing", []string{"orders/{+rest}"}, "orders", false},
	{"ReservedOtherPrefix", []string{"orders/{+rest}"}, "order/a", false},
	{"ReservedAll", []string{"{+all}"}, "a", true},
	{"ReservedAllNested", []string{"{+all}"}, "a/b/c", true},
	{"ReservedAllReservedCharacters", []string{"{+all}"}, "a:b/c?d#e@f!g$h&i'j(k)l*m+n;o=p", true},

	// Literal names match exactly.
	{"LiteralExact", []string{"orders/42"}, "orders/42", true},
	{"LiteralLonger", []string{"orders/42"}, "orders/421", false},
	{"LiteralShorter", []string{"orders/42"}, "orders/4", false},
	{"LiteralCase", []string{"Orders/42"}, "orders/42", false},
	{"LiteralNonASCII", []string{"café/1"}, "café/1", true},

	// Several templates are OR-ed.
	{"SeveralFirst", []string{"a/{x}", "b/{+y}", "c"}, "a/1", true},
	{"SeveralSecond", []string{"a/{x}", "b/{+y}", "c"}, "b/1/2", true},
	{"SeveralLiteral", []string{"a/{x}", "b/{+y}", "c"}, "c", true},
	{"SeveralNone", []string{"a/{x}", "b/{+y}", "c"}, "a/1/2", false},
	{"SeveralNoneOther", []string{"a/{x}", "b/{+y}", "c"}, "d/1", false},

	// Exploded lists and key-value pairs do not match: a stream is
	// selected by single values only.
	{"ExplodedListOneValue", []string{"list/{ids*}"}, "list/1", true},
	{"ExplodedListSeveralValues", []string{"list/{ids*}"}, "list/1,2,3", false},
	{"ExplodedKeyValues", []string{"kv/{keys*}"}, "kv/a=1,b=2", false},
	{"ExplodedKeyValue", []string{"kv/{keys*}"}, "kv/a=1", false},
	{"ExplodedPathSegments", []string{"p{/list*}"}, "p/1/2/3", false},
	{"ExplodedQuery", []string{"q/{id}{?x*}"}, "q/1?a=1&b=2", false},

	// Other operators, each variable with one non-empty value.
	{"PathOperator", []string{"p{/a,b}"}, "p/1/2", true},
	{"PathOperatorMissingValue", []string{"p{/a,b}"}, "p/1", false},
	{"QueryOperator", []string{"q/{id}{?x}"}, "q/1?x=2", true},
	{"LabelOperator", []string{"file{.ext}"}, "file.json", true},
	{"FragmentOperator", []string{"doc{#f}"}, "doc#frag", true},
	{"ContinuationEmptyValue", []string{"q{&x}"}, "q&x=", false},

	// Stream names are any UTF-8 text: bytes that are not URI characters
	// are matched in percent-encoded form, on both sides.
	{"VariableNonASCII", []string{"users/{id}"}, "users/josé", true},
	{"VariableSpace", []string{"users/{id}"}, "users/a b", true},
	{"VariablePercent", []string{"users/{id}"}, "users/100%", true},
	{"ReservedNonASCII", []string{"{+all}"}, "ünïcode/a b/100%", true},
	{"LiteralSpace", []string{"a b"}, "a b", true},
	{"LiteralSpaceMismatch", []string{"a b"}, "a%20b", false},
	{"LiteralEncodedSpace", []string{"a%20b"}, "a b", true},
	{"LiteralEncodedPercent", []string{"100%25"}, "100%", true},
	{"NonASCIIPrefix", []string{"josé/{id}"}, "josé/1", true},
	{"NonASCIIPrefixMismatch", []string{"josé/{id}"}, "jose/1", false},
	{"PrefixModifier", []string{"x/{id:3}"}, "x/abc", true},
	{"PrefixModifierLonger", []string{"x/{id:3}"}, "x/abcd", false},
	{"RepeatedVariableIsAList", []string{"a/{x}/b/{x}"}, "a/1/b/1", false},
}

func TestTemplateMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range templateTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts, err := fossil.ParseTemplates("query.stream", tt.templates)
			if err != nil {
				t.Fatalf("ParseTemplates(%q): %v", tt.templates, err)
			}
			if got := ts.Match(tt.stream); got != tt.want {
				t.Fatalf("%q.Match(%q) = %v, want %v", tt.templates, tt.stream, got, tt.want)
			}
			if len(ts) == 1 {
				if got := ts[0].Match(tt.stream); got != tt.want {
					t.Fatalf("%q.Match(%q) = %v, want %v", tt.templates[0], tt.stream, got, tt.want)
				}
			}
			// Whatever matches starts with a template's literal prefix, so
			// narrowing a history scan by prefix never loses an event.
			if tt.want {
				ok := false
				for _, tp := range ts {
					ok = ok || (tp.Match(tt.stream) && strings.HasPrefix(tt.stream, tp.Prefix()))
				}
				if !ok {
					t.Fatalf("%q matches %q but no matching template's prefix is a prefix of it", tt.templates, tt.stream)
				}
			}
		})
	}
}

func TestTemplateShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		literal bool
		prefix  string
	}{
		{"orders/42", true, "orders/42"},
		{"visits/{id}", false, "visits/"},
		{"orders/{+rest}", false, "orders/"},
		{"{+all}", false, ""},
		{"a/{x}/b/{y}", false, "a/"},
		{"p{/a,b}", false, "p"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			tp, err := fossil.ParseTemplate("query.stream", tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if tp.String() != tt.raw || tp.Literal() != tt.literal || tp.Prefix() != tt.prefix {
				t.Fatalf("String %q Literal %v Prefix %q, want %q %v %q", tp.String(), tp.Literal(), tp.Prefix(), tt.raw, tt.literal, tt.prefix)
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, detail string
	}{
		{"Empty", "", "empty"},
		{"Unclosed", "{unclosed", "invalid stream template"},
		{"UnopenedClose", "a}", "invalid stream template"},
		{"EmptyExpression", "a/{}", "invalid stream template"},
		{"BadOperator", "a/{@x}", "invalid stream template"},
		{"SpaceInExpression", "a/{x y}", "invalid stream template"},
		{"TooLong", strings.Repeat("a", 4097), "longer than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := fossil.ParseTemplate("query.stream", tt.raw)
			var inv *fossil.InvalidError
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), tt.detail) || !strings.Contains(err.Error(), "query.stream") {
				t.Fatalf("ParseTemplate(%.20q) = %v, want an InvalidError at query.stream mentioning %q", tt.raw, err, tt.detail)
			}
			if _, err := fossil.ParseTemplates("query.stream", []string{"ok/{x}", tt.raw}); err == nil {
				t.Fatal("ParseTemplates accepted a list with an invalid template")
			}
		})
	}
}

// FuzzParseTemplate parses arbitrary templates and matches them against
// arbitrary streams: nothing panics, and a match always starts with the
// template's literal prefix (which the history scan relies on).
func FuzzParseTemplate(f *testing.F) {
	for _, tt := range templateTests {
		f.Add(tt.templates[0], tt.stream)
	}
	f.Add("{", "")
	f.Add("{x:3}", "abc")
	f.Add("a/{x,y*}/{+z:2}", "a/1,2/ab")
	f.Add("{%41}", "A")
	f.Fuzz(func(t *testing.T, raw, stream string) {
		tp, err := fossil.ParseTemplate("query.stream", raw)
		if err != nil {
			var inv *fossil.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("ParseTemplate(%q) error %T %v is not an InvalidError", raw, err, err)
			}
			return
		}
		if tp.String() != raw {
			t.Fatalf("String %q of %q", tp.String(), raw)
		}
		if tp.Match(stream) && !strings.HasPrefix(stream, tp.Prefix()) {
			t.Fatalf("%q matches %q, which lacks the prefix %q", raw, stream, tp.Prefix())
		}
		if tp.Literal() && !tp.Match(tp.Prefix()) {
			t.Fatalf("literal %q does not match the stream it names, %q", raw, tp.Prefix())
		}
	})
}
