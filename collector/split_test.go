package collector

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// scannerCases are JSON texts, valid and not, for the scanner's tests.
var scannerCases = []string{
	`{}`, `[]`, `{"a":1,"b":"x"}`, `[1,"a",{"b":[2,3]},null]`, ` { "a" : [ 1 , 2 ] , "a" : "last" } `,
	`{"k\"ey":"v\\","e\u0041":{"x":"}"}}`, `[" ] ",{"}":"]"},true,false,-1.5e3]`,
	`{"a":1}`, `{ "a" : 1 }`, "{\"a\":\n[1,\t2]\r}", `"a b"`, `" "`, `"\" "`, `"\\" `,
	`{"k":"v \\\" w","x":[ "y\\\\", " z " ]}`, `[1,2,3]`, ` 1 `, `{"s":"\u0020 "}`, `"é ü"`,
	`01`, `-`, `1.`, `1e`, `1e+`, `-0.5E-7`, `tru`, `nul`, `[1,]`, `{"a":1,}`, `{"a"}`, `{1:2}`, `"\x"`, `"\u12g4"`,
	"\"\x01\"", "\"\xff\"", "\"\xed\xa0\x80\"", `"\ud800"`, `[` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `]`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), `{"a":{"b" : [1, {"c":2}]}}`, "[1] x", `{"a":1}}`,
}

// FuzzScanner holds the scanner to encoding/json: it accepts what
// json.Valid and utf8.Valid accept, finds white space exactly when
// json.Compact removes some, and cuts objects and arrays as json.Unmarshal
// does (a repeated name keeps its last value).
func FuzzScanner(f *testing.F) {
	for _, c := range scannerCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := json.Valid(b) && utf8.Valid(b)
		space, ok := scanValue(b)
		if ok != want {
			t.Fatalf("scanValue(%q) = %v, json.Valid and utf8.Valid say %v", b, ok, want)
		}
		if !ok {
			return
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			t.Fatal(err)
		}
		if got := compactIf(space, b); !bytes.Equal(got, compact.Bytes()) {
			t.Fatalf("compactIf(%v, %q) = %q, want %q", space, b, got, compact.Bytes())
		}
		b = bytes.TrimSpace(b)
		switch b[0] {
		case '{':
			members, ok := scanObject(b)
			if !ok {
				t.Fatalf("scanObject(%q) refused a valid object", b)
			}
			requireMembers(t, b, members)
		case '[':
			elems, members, ok := scanArray(b)
			if !ok {
				t.Fatalf("scanArray(%q) refused a valid array", b)
			}
			var want []json.RawMessage
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			if len(elems) != len(want) {
				t.Fatalf("%s: %d elements, want %d", b, len(elems), len(want))
			}
			for i, e := range elems {
				w := bytes.TrimSpace(want[i])
				if e.object != (w[0] == '{') {
					t.Fatalf("%s: element %d object %v", b, i, e.object)
				}
				if e.object {
					requireMembers(t, w, shift(members[e.first:e.first+e.n], b, w))
				}
			}
		}
	})
}

// shift moves members found in b to offsets in w, a copy of a part of b.
func shift(ms []member, b, w []byte) []member {
	at := bytes.Index(b, w) // the first copy of the text is as good as any
	out := make([]member, len(ms))
	for i, m := range ms {
		m.nameAt, m.nameEnd, m.rawAt, m.rawEnd = m.nameAt-at, m.nameEnd-at, m.rawAt-at, m.rawEnd-at
		out[i] = m
	}
	return out
}

func requireMembers(t *testing.T, b []byte, members []member) {
	t.Helper()
	var want map[string]json.RawMessage
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	got := map[string]json.RawMessage{}
	for _, m := range members {
		var name string
		if err := json.Unmarshal(b[m.nameAt:m.nameEnd], &name); err != nil {
			t.Fatalf("%s: name %q: %v", b, b[m.nameAt:m.nameEnd], err)
		}
		raw := b[m.rawAt:m.rawEnd]
		got[name] = raw
		if m.esc != (raw[0] == '"' && bytes.IndexByte(raw, '\\') >= 0) {
			t.Fatalf("%s: member %q escapes %v", b, name, m.esc)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, raw)
		if m.space != (compact.Len() != len(raw)) {
			t.Fatalf("%s: member %q white space %v", b, name, m.space)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: got %d members, want %d", b, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%s: member %q = %s, want %s", b, k, got[k], v)
		}
	}
}

// TestScanner runs the fuzz cases.
func TestScanner(t *testing.T) {
	t.Parallel()
	for _, c := range scannerCases {
		want := json.Valid([]byte(c)) && utf8.Valid([]byte(c))
		if _, ok := scanValue([]byte(c)); ok != want {
			t.Errorf("scanValue(%.40q) = %v, want %v", c, ok, want)
		}
	}
}
