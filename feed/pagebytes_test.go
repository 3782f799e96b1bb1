package feed

import "testing"

// The subscribers reading history from SQL share Config.CatchUpBytes, two
// pages each, between MinPageBytes and PageBytes.
func TestReaderPageBytes(t *testing.T) {
	h := New(Config{PageBytes: 1 << 20, CatchUpBytes: 64 << 20})
	for _, tt := range []struct {
		readers int64
		want    int64
	}{
		{0, 1 << 20},              // a first reader: whole pages
		{1, 1 << 20},              // 32 MiB each would be more than a page
		{32, 1 << 20},             // 1 MiB each
		{64, 512 << 10},           // half
		{1000, (64 << 20) / 2000}, // 64 MiB ÷ 2,000 pages
		{4000, MinPageBytes},      // never below the floor
	} {
		h.readers.Store(tt.readers)
		if got := h.readerPageBytes(); got != tt.want {
			t.Errorf("%d readers: %d bytes per page, want %d", tt.readers, got, tt.want)
		}
	}
}
