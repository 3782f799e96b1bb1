package store

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestReadLogBoundedByBytes: a page stops once its documents reach
// MaxBytes (the first event always comes), PageFull says more follows, and
// paging on covers every event exactly once; large TOASTed documents and
// incompressible ones alike.
func TestReadLogBoundedByBytes(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	const n = 12
	rng := rand.New(rand.NewPCG(1, 2))
	var sizes []int
	for i := range n {
		var data string
		switch i % 3 {
		case 0: // small
			data = "x"
		case 1: // large and compressible
			data = strings.Repeat("a", 300<<10)
		default: // large and incompressible
			var sb strings.Builder
			for sb.Len() < 200<<10 {
				sb.WriteByte(byte('a' + rng.IntN(26)))
			}
			data = sb.String()
		}
		e := testEvent(string(rune('a'+i)), data)
		sizes = append(sizes, len(e.Doc))
		stream := "s"
		if i%2 == 1 {
			stream = "t"
		}
		if _, err := b.appender.Append(ctx, &AppendRequest{Stream: stream, Events: events(e)}); err != nil {
			t.Fatal(err)
		}
	}
	const maxBytes = 400 << 10
	var after int64
	pages := 0
	for {
		page, err := b.store.ReadLog(ctx, ReadLogParams{After: after, Limit: 1000, MaxBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		var size int64
		for i, e := range page {
			if e.Number != after+int64(i)+1 {
				t.Fatalf("page after %d: event %d at %d", after, e.Number, i)
			}
			if i > 0 && size >= maxBytes {
				t.Fatalf("page after %d: event %d read although %d bytes came before it", after, e.Number, size)
			}
			size += int64(len(e.Doc))
		}
		if len(page) == 0 {
			t.Fatalf("empty page after %d", after)
		}
		after = page[len(page)-1].Number
		full := PageFull(page, 1000, maxBytes)
		if after == n {
			break
		}
		if !full {
			t.Fatalf("page ending at %d (%d bytes) is not full, but %d events follow", after, size, n-after)
		}
		// The page was cut by bytes: one more event would have passed the bound.
		if size+int64(sizes[after]) <= maxBytes && size < maxBytes {
			t.Fatalf("page ending at %d was cut at %d bytes, below the bound", after, size)
		}
	}
	if pages < 4 {
		t.Fatalf("%d pages for %d events of up to 300 KiB under a bound of 400 KiB", pages, n)
	}
	// The same through the stream read, which is bounded by DefaultPageBytes.
	var got int
	from := int64(1)
	for {
		page, err := b.store.StreamEvents(ctx, "t", from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		got += len(page)
		if !PageFull(page, 1000, 0) {
			break
		}
		from = page[len(page)-1].Sequence + 1
	}
	if got != n/2 {
		t.Fatalf("stream t: %d events, want %d", got, n/2)
	}
}
