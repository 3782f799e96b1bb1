package feed

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

// BenchmarkSSEFrameEncoding measures rendering one event as an SSE frame
// ("id: N\ndata: <one-line CloudEvents JSON with the fossil extensions>\n\n"),
// which the tailer does once per event for all live subscribers and a
// catch-up read does per event and subscriber.
func BenchmarkSSEFrameEncoding(b *testing.B) {
	for _, size := range []int{0, 200, 4 << 10, 64 << 10} {
		doc := fmt.Sprintf(`{"specversion":"1.0","id":"a1b2c3","source":"/bench","type":"com.example.bench","subject":"s","time":"2024-05-06T07:08:09Z","datacontenttype":"application/json","data":{"pad":%q}}`,
			strings.Repeat("x", size))
		e := &fossil.Event{
			Number: 123456789, Stream: "orders/42", Sequence: 17, ID: "a1b2c3", Source: "/bench", Type: "com.example.bench",
			ExpectAck: []string{"billing", "audit"}, Doc: []byte(doc), CommittedAt: time.Now(),
		}
		b.Run(fmt.Sprintf("Data=%dB", size), func(b *testing.B) {
			buf := appendFrame(nil, e)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendFrame(buf[:0], e)
			}
		})
	}
}
