package loadgen

import (
	"math"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	h := &histogram{}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 500 * time.Millisecond},
		{0.95, 950 * time.Millisecond},
		{0.99, 990 * time.Millisecond},
		{1.00, 1000 * time.Millisecond},
	} {
		got := h.quantile(tt.q)
		if diff := math.Abs(float64(got-tt.want)) / float64(tt.want); diff > 0.01 {
			t.Errorf("q%.2f = %v, want %v ±1%%", tt.q, got, tt.want)
		}
	}
	if s := h.summary(); s.Count != 1000 || s.Max != 1000 {
		t.Errorf("summary %+v", s)
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
}

func TestHistogramBucketsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 127, 128, 255, 256, 257, 511, 512, 1000, 123456789, 1 << 40, math.MaxInt64} {
		mid := bucketMid(bucketOf(v))
		if bucketOf(mid) != bucketOf(v) {
			t.Errorf("v=%d: bucket %d, its middle %d is in bucket %d", v, bucketOf(v), mid, bucketOf(mid))
		}
		if v > 0 && math.Abs(float64(mid)-float64(v))/float64(v) > 0.01 {
			t.Errorf("v=%d: bucket middle %d is more than 1%% away", v, mid)
		}
	}
	h := &histogram{}
	h.record(-time.Second) // clock skew counts as zero
	if h.quantile(1) != 0 {
		t.Errorf("negative duration recorded as %v", h.quantile(1))
	}
}

func TestLimiterSpacesEvents(t *testing.T) {
	t.Parallel()
	l := newLimiter(1000) // 1ms per event
	start := time.Now()
	for range 5 {
		l.wait(t.Context(), 10)
	}
	// Five reservations of 10 events: the last may start after 40ms.
	if el := time.Since(start); el < 35*time.Millisecond {
		t.Errorf("50 events at 1000/s took %v, want about 40ms or more", el)
	}
}
