package fossil

import (
	"testing"

	"github.com/yosida95/uritemplate/v3"
)

// FuzzSegmentsAgree checks the fast matcher against uritemplate's general
// one on every template the fast matcher accepts.
func FuzzSegmentsAgree(f *testing.F) {
	seeds := [][2]string{
		{"a/{x}/b/{y}", "a/1/b/2"}, {"{+all}", "a/b"}, {"orders/{+rest}", "orders/a/b"},
		{"visits/{id}", "visits/1/2"}, {"{kind}/latest", "orders/latest"}, {"u/{id}", "u/jos%C3%A9"},
		{"a/{x}{y}", "a/12"}, {"x/{+a}/y/{b}", "x/1/2/y/3"}, {"p{+a}", "p%2"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, stream string) {
		tp, err := ParseTemplate("t", raw)
		if err != nil || tp.segs == nil {
			return
		}
		enc := encodeStream(stream)
		fast := matchSegments(tp.segs, enc)
		slow := false
		if vals := tp.tmpl.Match(enc); vals != nil {
			slow = true
			for _, v := range vals {
				if v.T != uritemplate.ValueTypeString || v.String() == "" {
					slow = false
				}
			}
		}
		if fast != slow {
			t.Fatalf("template %q (encoded %q), stream %q: fast %v, uritemplate %v", raw, tp.encoded, stream, fast, slow)
		}
	})
}
