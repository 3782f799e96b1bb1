package collector

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzSplit checks the splitters against encoding/json on valid documents.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":1,"b":"x"}`, `[1,"a",{"b":[2,3]},null]`, ` { "a" : [ 1 , 2 ] , "a" : "last" } `,
		`{"k\"ey":"v\\","e\u0041":{"x":"}"}}`, `[" ] ",{"}":"]"},true,false,-1.5e3]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.TrimSpace(b)
		if !json.Valid(b) || len(b) == 0 {
			return
		}
		switch b[0] {
		case '{':
			var want map[string]json.RawMessage
			if err := json.Unmarshal(b, &want); err != nil {
				return
			}
			got, err := splitObject(b)
			if err != nil || len(got) != len(want) {
				t.Fatalf("%s: got %v (%v), want %v", b, got, err, want)
			}
			for k, v := range want {
				if !bytes.Equal(got[k], v) {
					t.Fatalf("%s: member %q = %s, want %s", b, k, got[k], v)
				}
			}
		case '[':
			var want []json.RawMessage
			if err := json.Unmarshal(b, &want); err != nil {
				return
			}
			got := splitArray(b)
			if len(got) != len(want) {
				t.Fatalf("%s: %d elements, want %d", b, len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s: element %d = %s, want %s", b, i, got[i], want[i])
				}
			}
		}
	})
}

// compactCases are valid JSON texts, with and without white space that
// compaction removes, including strings that contain white space, quotes
// and escaped backslashes.
var compactCases = []string{
	`{"a":1}`, `{ "a" : 1 }`, "{\"a\":\n[1,\t2]\r}", `"a b"`, `" "`, `"\" "`, `"\\" `,
	`{"k":"v \\\" w","x":[ "y\\\\", " z " ]}`, `[1,2,3]`, ` 1 `, `{"s":"\u0020 "}`, `[]`, `"é ü"`,
}

// TestCompactValid checks compactValid against json.Compact, and that it
// returns its input, without a copy, when there is nothing to remove.
func TestCompactValid(t *testing.T) {
	t.Parallel()
	for _, c := range compactCases {
		t.Run(c, func(t *testing.T) {
			var want bytes.Buffer
			if err := json.Compact(&want, []byte(c)); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			in := []byte(c)
			got := compactValid(in)
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("compactValid(%s) = %s, want %s", c, got, want.Bytes())
			}
			if same := len(got) > 0 && &got[0] == &in[0]; same != (want.Len() == len(in)) {
				t.Errorf("returned its input: %v; nothing to remove: %v", same, want.Len() == len(in))
			}
		})
	}
}

// FuzzCompactValid checks compactValid against json.Compact on valid JSON.
func FuzzCompactValid(f *testing.F) {
	for _, c := range compactCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, b); err != nil {
			t.Fatal(err)
		}
		if got := compactValid(b); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("compactValid(%q) = %q, want %q", b, got, want.Bytes())
		}
	})
}
