package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
)

// requireTree checks that the tree holds every event of the log: each
// stored leaf is the one recomputed from the event's row (or, for a
// replaced event, the stored leaf is the original and the last replacement
// record names the current content), the stored hashes give the root the
// head row's edge gives, and proofs from the stored hashes verify for
// every size up to the head.
func requireTree(t *testing.T, st *Store, wantSize int64) *TreeState {
	t.Helper()
	ctx := context.Background()
	ts, err := st.TreeState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Head != wantSize || ts.Size != wantSize || ts.Edge.Size != wantSize {
		t.Fatalf("tree: head %d, size %d, edge %d; want %d", ts.Head, ts.Size, ts.Edge.Size, wantSize)
	}
	replaced := map[int64]tlog.Hash{}
	var chain tlog.Hash
	reps, err := st.Replacements(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		chain = fossil.NextChain(chain, fossil.ReplacementRecord(r.Index, r.Number, r.LeafHash))
		if chain != r.Chain {
			t.Fatalf("replacement %d: chain differs", r.Index)
		}
		replaced[r.Number] = r.LeafHash
	}
	if int64(len(reps)) != ts.Replacements || chain != ts.Chain {
		t.Fatalf("replacement chain: %d records, head says %d", len(reps), ts.Replacements)
	}
	edge := &fossil.TreeEdge{}
	roots := []tlog.Hash{edge.Root()}
	for after := int64(0); after < wantSize; after += 100 {
		leaves, err := st.Leaves(ctx, after, ts.Size, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leaves {
			if l.Event.Number != edge.Size+1 {
				t.Fatalf("event %d missing", edge.Size+1)
			}
			h, err := l.Event.LeafHash(l.Salt)
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := replaced[l.Event.Number]; ok {
				if r != h {
					t.Fatalf("event %d: replacement record does not match the row", l.Event.Number)
				}
			} else if h != l.Hash {
				t.Fatalf("event %d: stored leaf %v, recomputed %v", l.Event.Number, l.Hash, h)
			}
			if _, err := edge.Add(l.Hash); err != nil {
				t.Fatal(err)
			}
			roots = append(roots, edge.Root())
		}
	}
	if edge.Root() != ts.Edge.Root() {
		t.Fatalf("root from leaves differs from the head row's")
	}
	r := st.HashReader(ctx)
	rng := rand.New(rand.NewPCG(1, 2))
	for size := int64(1); size <= wantSize; size++ {
		th, err := tlog.TreeHash(size, r)
		if err != nil {
			t.Fatal(err)
		}
		if th != roots[size] {
			t.Fatalf("size %d: stored root differs", size)
		}
		for _, n := range []int64{size - 1, rng.Int64N(size)} {
			p, err := tlog.ProveRecord(size, n, r)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, n)})
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(p, size, th, n, leaf[0]); err != nil {
				t.Fatalf("size %d, leaf %d: %v", size, n, err)
			}
		}
		from := 1 + rng.Int64N(size)
		p, err := tlog.ProveTree(size, from, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(p, size, th, from, roots[from]); err != nil {
			t.Fatalf("consistency %d -> %d: %v", from, size, err)
		}
	}
	return ts
}

// TestTreeFollowsLog appends 300 events in groups of every shape (single
// events, batches, concurrent writers, a replacement) and checks the tree.
func TestTreeFollowsLog(t *testing.T) {
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := range 10 {
				evs := events(testEvent(fmt.Sprintf("w%d-%d", w, i), "x"))
				if i%3 == 0 {
					evs = append(evs, testEvent(fmt.Sprintf("w%d-%d-b", w, i), "y"), testEvent(fmt.Sprintf("w%d-%d-c", w, i), "z"))
				}
				if _, err := b.appender.Append(ctx, &AppendRequest{Stream: fmt.Sprintf("s/%d", w%3), Events: evs}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// 10 writers × (10 + 4×2) events = 180.
	for i := range 119 {
		if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "t", Events: events(testEvent(fmt.Sprintf("t%d", i), "q"))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "t", Replace: true, Events: events(testEvent("t5", "erased"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "t", Events: events(testEvent("last", "q"))}); err != nil {
		t.Fatal(err)
	}
	ts := requireTree(t, b.store, 300)
	if ts.Replacements != 1 {
		t.Fatalf("replacements = %d, want 1", ts.Replacements)
	}
}

// TestTreeTwoAppenders runs two appenders with their own pools, as two
// processes would, writing at the same time: one tree results.
func TestTreeTwoAppenders(t *testing.T) {
	b := setupAppend(t, AppenderConfig{})
	other, err := Open(context.Background(), Config{DatabaseURL: b.dbURL, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	app2 := NewAppender(other, AppenderConfig{})
	t.Cleanup(app2.Close)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w, app := range []*Appender{b.appender, app2, b.appender, app2} {
		wg.Go(func() {
			for i := range 50 {
				evs := events(testEvent(fmt.Sprintf("p%d-%d", w, i), "x"))
				if i%5 == 0 {
					evs = append(evs, testEvent(fmt.Sprintf("p%d-%d-b", w, i), "y"))
				}
				if _, err := app.Append(ctx, &AppendRequest{Stream: fmt.Sprintf("s/%d", w), Events: evs}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	b.requireDense(t, 4*(50+10))
	requireTree(t, b.store, 4*(50+10))
}

// TestBuildTree gives a log written before the tree existed its tree in
// steps, while appenders keep writing.
func TestBuildTree(t *testing.T) {
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	for i := range 120 {
		if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "old", Events: events(testEvent(fmt.Sprintf("o%d", i), "x"))}); err != nil {
			t.Fatal(err)
		}
	}
	// As if the log predated the tree: no salts, no hashes.
	if _, err := b.check.Exec(ctx, `UPDATE fossil_events SET salt = NULL WHERE number % 2 = 0;
		UPDATE fossil_events SET tree_hashes = NULL;
		DELETE FROM fossil_tree_hashes;
		UPDATE fossil_head SET tree_size = 0, tree_edge = '\x'`); err != nil {
		t.Fatal(err)
	}
	// A fresh appender (no cache), as after a restart.
	b.appender.Close()
	app := NewAppender(b.store, AppenderConfig{})
	t.Cleanup(app.Close)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 40 {
			if _, err := app.Append(ctx, &AppendRequest{Stream: "new", Events: events(testEvent(fmt.Sprintf("n%d", i), "x"))}); err != nil {
				t.Error(err)
			}
		}
	}()
	steps := 0
	for {
		size, head, err := b.store.BuildTree(ctx, 16)
		if err != nil {
			t.Fatal(err)
		}
		steps++
		if size == head {
			select {
			case <-done:
			default:
				continue
			}
			// Appenders keep it complete from here on.
			size, head, err = b.store.BuildTree(ctx, 16)
			if err != nil || size != head {
				t.Fatalf("after the appenders: size %d head %d err %v", size, head, err)
			}
			break
		}
	}
	if steps < 8 {
		t.Fatalf("%d steps, want at least 120/16", steps)
	}
	if _, err := app.Append(ctx, &AppendRequest{Stream: "new", Events: events(testEvent("after", "x"))}); err != nil {
		t.Fatal(err)
	}
	requireTree(t, b.store, 161)
}

// TestLeafHashesParallel checks that the leaf hashes of a large group,
// computed on several goroutines, are each event's own, in order.
func TestLeafHashesParallel(t *testing.T) {
	for _, n := range []int{1, parallelLeaves - 1, 2 * parallelLeaves, 2*parallelLeaves + 1, 801} {
		events := make([]*fossil.Event, n)
		for i := range events {
			e := testEvent(fmt.Sprintf("e%d", i), fmt.Sprintf("data %d", i))
			e.Number, e.Stream, e.Sequence = int64(i+1), fmt.Sprintf("s%d", i%7), int64(i/7+1)
			if err := prepareLeaf(e); err != nil {
				t.Fatal(err)
			}
			events[i] = e
		}
		got := leafHashes(events)
		if len(got) != n {
			t.Fatalf("%d events: %d leaf hashes", n, len(got))
		}
		for i, e := range events {
			if want := fossil.LeafHash(e.Number, e.Stream, e.Sequence, e.LeafTail); got[i] != want {
				t.Fatalf("%d events: leaf %d is %x, want %x", n, i, got[i], want)
			}
		}
	}
}
