package rtt

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	var seen []int
	r, err := Measure(100, func(i int) error {
		seen = append(seen, i)
		if i == 99 {
			time.Sleep(2 * time.Millisecond) // the slowest: p99 and above p50
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 100 || seen[0] != 0 || seen[99] != 99 {
		t.Fatalf("ran %v", seen)
	}
	if r.N != 100 || r.P99 < 2*time.Millisecond || r.P50 >= r.P99 || r.Took < r.P99 {
		t.Fatalf("result %+v", r)
	}
	if s := r.String(); !strings.HasPrefix(s, "100 in ") || !strings.Contains(s, "/s, mean ") || !strings.Contains(s, ", p99 ") {
		t.Fatalf("String() = %q", s)
	}
}

func TestMeasureStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	runs := 0
	if _, err := Measure(10, func(i int) error {
		runs++
		if i == 3 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) || runs != 4 {
		t.Fatalf("err %v after %d runs, want boom after 4", err, runs)
	}
	if _, err := Measure(0, func(int) error { return nil }); err == nil {
		t.Fatal("no error for 0 operations")
	}
}
