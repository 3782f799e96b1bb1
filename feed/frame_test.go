package feed

import (
	"math"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

// TestFrameBound: a frame rendered into the subscriber's buffer never
// outgrows the room sendEvent made for it, whatever its names escape to.
func TestFrameBound(t *testing.T) {
	for _, e := range []*fossil.Event{
		{Number: 1, Stream: "a", Sequence: 1, Doc: []byte(`{}`)},
		{Number: 1, Stream: "a", Sequence: 1, Doc: nil},
		{Number: math.MaxInt64, Stream: strings.Repeat("\x01\"\\\u2028\xff", 50), Sequence: math.MaxInt64,
			ExpectAck: []string{strings.Repeat("\x02", 30), "", "\u2029"}, Doc: []byte(`{"specversion":"1.0","id":"x"}`)},
		{Number: math.MinInt64, Stream: "é", Sequence: math.MinInt64, ExpectAck: []string{"a", "b"}, Doc: []byte(`x`)},
	} {
		if n, bound := len(appendFrame(nil, e)), frameBound(e); n > bound {
			t.Errorf("frame of %d bytes, bound %d: %+v", n, bound, e)
		}
	}
}
