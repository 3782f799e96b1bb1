package store

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/internal/dbtest"
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

// TestReadersQueueAndAppendsGoOn: with every connection of the main pool
// taken and page reads queued for their turn, appends still commit (the
// appender has its own pool); queued reads are counted, and are served in
// the order they came.
func TestReadersQueueAndAppendsGoOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtest.NewDB(t)
	st, err := Open(ctx, Config{DatabaseURL: dbURL, MaxConns: 4, MaxReaders: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	app := NewAppender(st, AppenderConfig{})
	t.Cleanup(app.Close)

	// Take every connection of the main pool, and the one read turn.
	var conns []*pgxpool.Conn
	for range 4 {
		c, err := st.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	release, err := st.readTurn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const readers = 5
	done := make(chan struct{}, readers)
	for i := range readers {
		go func() {
			if _, err := st.ReadLog(ctx, ReadLogParams{Limit: 10}); err != nil {
				t.Error(err)
			}
			done <- struct{}{}
		}()
		waitFor(t, func() bool { return st.ReadersWaiting() == int64(i+1) })
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := app.Append(actx, &AppendRequest{Stream: "s", Events: events(testEvent("a", "x"))}); err != nil {
		t.Fatalf("append with the main pool exhausted and %d readers queued: %v", readers, err)
	}
	for _, c := range conns {
		c.Release()
	}
	// Queue more for the turn while the readers wait: turns are given in
	// arrival order (each records its place while it holds the turn).
	var mu sync.Mutex
	var order []int
	const turns = 5
	for i := range turns {
		go func() {
			done2, err := st.readTurn(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			done2()
		}()
		waitFor(t, func() bool { return st.ReadersWaiting() == int64(readers+i+1) })
	}
	release()
	for range readers {
		<-done
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == turns })
	for i, got := range order {
		if got != i {
			t.Fatalf("turns taken in order %v: not first come, first served", order)
		}
	}
	if n := st.ReadersWaiting(); n != 0 {
		t.Fatalf("%d readers still counted as waiting", n)
	}
}
