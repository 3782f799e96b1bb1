package collector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

// TestAppendResult: the metric's result label follows the problem table.
func TestAppendResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err       error
		duplicate bool
		want      string
	}{
		{nil, false, "ok"},
		{nil, true, "duplicate"},
		{&fossil.SequenceConflictError{Stream: "s", Expected: 2}, false, "conflict"},
		{fmt.Errorf("x: %w", fossil.ErrConflict), false, "conflict"},
		{fossil.Invalid("header.x", "bad"), false, "invalid"},
		{fossil.ErrUnsupportedMediaType, false, "invalid"},
		{fossil.ErrSchemaViolation, false, "invalid"},
		{fossil.ErrForbidden, false, "invalid"},
		{&http.MaxBytesError{Limit: 1}, false, "invalid"},
		{fossil.ErrUnavailable, false, "unavailable"},
		{context.DeadlineExceeded, false, "unavailable"},
		{errors.New("boom"), false, "error"},
	}
	for _, tt := range tests {
		if got := AppendResult(tt.err, tt.duplicate); got != tt.want {
			t.Errorf("AppendResult(%v, %v) = %q, want %q", tt.err, tt.duplicate, got, tt.want)
		}
	}
}
