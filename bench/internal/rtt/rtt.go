// Package rtt times operations run one after the other, for the floor
// benchmarks beside make bench (bench/httpfloor, bench/pgxfloor).
package rtt

import (
	"fmt"
	"slices"
	"time"
)

// Result is what [Measure] timed.
type Result struct {
	N        int
	Took     time.Duration
	P50, P99 time.Duration
}

// Measure runs op n times, one after the other, and times each run; it
// stops at the first error.
func Measure(n int, op func(i int) error) (Result, error) {
	if n < 1 {
		return Result{}, fmt.Errorf("rtt: %d operations, want at least 1", n)
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := range n {
		t := time.Now()
		if err := op(i); err != nil {
			return Result{}, err
		}
		lat = append(lat, time.Since(t))
	}
	took := time.Since(start)
	slices.Sort(lat)
	return Result{N: n, Took: took, P50: lat[len(lat)/2], P99: lat[len(lat)*99/100]}, nil
}

// String is "N in T: R/s, mean M ms, p50 X ms, p99 Y ms".
func (r Result) String() string {
	return fmt.Sprintf("%d in %v: %.0f/s, mean %.3f ms, p50 %.3f ms, p99 %.3f ms",
		r.N, r.Took.Round(time.Millisecond), float64(r.N)/r.Took.Seconds(),
		float64(r.Took)/float64(r.N)/1e6, float64(r.P50)/1e6, float64(r.P99)/1e6)
}
