package testserver

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strconv"
	"strings"
)

// LabelKey is the pprof label that marks the goroutines of one test.
// Goroutines inherit labels from the goroutine that starts them, so
// everything a labelled test and the server it starts run is counted, and
// nothing of the tests running in parallel.
const LabelKey = "fossil_test"

// Labelled runs fn with the goroutine label LabelKey=value.
func Labelled(value string, fn func()) {
	pprof.Do(context.Background(), pprof.Labels(LabelKey, value), func(context.Context) { fn() })
}

// Goroutines reads the goroutine profile and returns how many goroutines
// carry the label LabelKey=value, and for each of funcs how many of those
// have it on their stack.
func Goroutines(value string, funcs ...string) (total int, in []int) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1) // writing to a buffer does not fail
	want := strconv.Quote(LabelKey) + ":" + strconv.Quote(value)
	in = make([]int, len(funcs))
	// Records are separated by blank lines: "N @ pcs", "# labels: {…}",
	// then the stack.
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		lines := strings.Split(strings.TrimSpace(rec), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "# labels: ") || !strings.Contains(lines[1], want) {
			continue
		}
		count, _, _ := strings.Cut(lines[0], " @ ")
		n, err := strconv.Atoi(count)
		if err != nil {
			continue
		}
		total += n
		for i, f := range funcs {
			if strings.Contains(rec, f) {
				in[i] += n
			}
		}
	}
	return total, in
}
