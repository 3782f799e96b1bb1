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
