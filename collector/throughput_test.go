package collector_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkCollect measures POST /collect end to end — HTTP, decoding,
// group commit in PostgreSQL — with single binary-mode events from 1 and
// from 64 concurrent clients. ns/op is wall time per event; events/s is
// the throughput.
func BenchmarkCollect(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("Clients%d", clients), func(b *testing.B) {
			tb := setup(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			var mu sync.Mutex
			var firstErr error
			b.ResetTimer()
			for c := range clients {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						h := hdr("Fossil-Stream", fmt.Sprintf("bench/%d", c%8),
							"ce-specversion", "1.0", "ce-id", fmt.Sprintf("ev-%d", i), "ce-source", "/bench",
							"ce-type", "com.example.bench", "Content-Type", "application/json")
						res, err := tb.do(context.Background(), h, []byte(`{"n":1,"page":"/pricing"}`))
						if err == nil && res.status != http.StatusOK {
							err = fmt.Errorf("status %d: %s", res.status, res.body)
						}
						if err != nil {
							mu.Lock()
							if firstErr == nil {
								firstErr = err
							}
							mu.Unlock()
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
