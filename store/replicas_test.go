package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestReadReplicas runs on a real streaming replica (pg_basebackup -R):
// every page read split at what the replica holds is the page the primary
// alone returns, with replay paused and a seam in the middle of pages;
// the replica serves the prefix; a replica that is behind what it said,
// behind a replacement, lagging or down is not read, and is read again
// once it recovers.
func TestReadReplicas(t *testing.T) {
	pair := dbtest.NewReplicated(t)
	ctx := context.Background()
	var logs lockedBuffer
	routed, err := Open(ctx, Config{
		DatabaseURL: pair.PrimaryURL, MaxConns: 8,
		Logger:               slog.New(slog.NewTextHandler(&logs, nil)),
		ReadReplicaURLs:      []string{pair.ReplicaURL},
		ReplicaMaxLag:        time.Hour,
		ReplicaCheckInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(routed.Close)
	primary, err := Open(ctx, Config{DatabaseURL: pair.PrimaryURL, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(primary.Close)
	app := NewAppender(primary, AppenderConfig{})
	t.Cleanup(app.Close)

	next := 0
	appendN := func(n int) {
		t.Helper()
		for n > 0 {
			batch := min(n, 50)
			var evs []*fossil.Event
			for range batch {
				next++
				data := fmt.Sprintf("event %d", next)
				if next%17 == 0 {
					data = strings.Repeat("large ", 8<<10) // 48 KiB: pages cut by bytes
				}
				evs = append(evs, testEvent(fmt.Sprint(next), data))
			}
			stream := fmt.Sprintf("s%d/x", next%5)
			if _, err := app.Append(ctx, &AppendRequest{Stream: stream, Events: evs}); err != nil {
				t.Fatal(err)
			}
			n -= batch
		}
	}
	status := func() ReplicaStatus {
		t.Helper()
		s := routed.ReplicaStatuses()
		if len(s) != 1 {
			t.Fatalf("%d replica statuses, want 1", len(s))
		}
		return s[0]
	}
	waitStatus := func(what string, ok func(ReplicaStatus) bool) ReplicaStatus {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := status()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica status %+v after 20s, want %s", s, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// same pages the whole log, a stream or a template's streams through
	// the routed store and through the primary alone, and requires the
	// same events.
	same := func(label string) {
		t.Helper()
		for _, limit := range []int{13, 1000} {
			for _, maxBytes := range []int64{0, 100 << 10} {
				if limit == 13 && maxBytes > 0 {
					continue // pages of 13 are seldom cut by bytes
				}
				var after int64
				for {
					p := ReadLogParams{After: after, Limit: limit, MaxBytes: maxBytes}
					got, err := routed.ReadLog(ctx, p)
					if err != nil {
						t.Fatal(err)
					}
					want, err := primary.ReadLog(ctx, p)
					if err != nil {
						t.Fatal(err)
					}
					requireSameEvents(t, fmt.Sprintf("%s: ReadLog after %d limit %d bytes %d", label, after, limit, maxBytes), got, want)
					if len(want) == 0 {
						break
					}
					after = want[len(want)-1].Number
				}
			}
		}
		for s := range 5 {
			stream := fmt.Sprintf("s%d/x", s)
			from := int64(1)
			for {
				got, err := routed.StreamEvents(ctx, stream, from, 9)
				if err != nil {
					t.Fatal(err)
				}
				want, err := primary.StreamEvents(ctx, stream, from, 9)
				if err != nil {
					t.Fatal(err)
				}
				requireSameEvents(t, fmt.Sprintf("%s: StreamEvents %s from %d", label, stream, from), got, want)
				if len(want) == 0 {
					break
				}
				from = want[len(want)-1].Sequence + 1
			}
		}
		head, err := primary.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			match func(string) bool
		}{
			{"one stream", func(s string) bool { return s == "s3/x" }},
			{"two streams", func(s string) bool { return s == "s1/x" || s == "s4/x" }},
			{"every stream", nil},
		} {
			rr, pr := routed.NewReader(tc.match), primary.NewReader(tc.match)
			var after int64
			for after < head {
				got, gotScanned, err := rr.Read(ctx, after, head, 11)
				if err != nil {
					t.Fatal(err)
				}
				want, wantScanned, err := pr.Read(ctx, after, head, 11)
				if err != nil {
					t.Fatal(err)
				}
				requireSameEvents(t, fmt.Sprintf("%s: Reader %s after %d", label, tc.name, after), got, want)
				if gotScanned != wantScanned {
					t.Fatalf("%s: Reader %s after %d: scanned %d, want %d", label, tc.name, after, gotScanned, wantScanned)
				}
				after = wantScanned
			}
		}
	}

	appendN(300)
	pair.WaitReplayed(t, 300)
	waitStatus("in use at 300", func(s ReplicaStatus) bool { return s.InUse && s.Replayed == 300 })

	t.Run("PausedSeam", func(t *testing.T) {
		pair.PauseReplay(t)
		appendN(200) // 301..500 on the primary only
		waitStatus("behind by 200", func(s ReplicaStatus) bool { return s.InUse && s.Behind == 200 })
		if got := pair.ReplicaHead(t); got != 300 {
			t.Fatalf("paused replica's head = %d", got)
		}
		before := status()
		pPages, pEvents := routed.PrimaryReads()
		// A page across the seam: 10 from the replica, 10 from the primary.
		page, err := routed.ReadLog(ctx, ReadLogParams{After: 290, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range page {
			if e.Number != 291+int64(i) {
				t.Fatalf("seam page: event %d at %d", e.Number, i)
			}
		}
		after := status()
		pPages2, pEvents2 := routed.PrimaryReads()
		if after.Events-before.Events != 10 || pEvents2-pEvents != 10 || after.Pages-before.Pages != 1 || pPages2-pPages != 1 {
			t.Fatalf("seam page: replica served %d events in %d pages, primary %d in %d; want 10 in 1 each",
				after.Events-before.Events, after.Pages-before.Pages, pEvents2-pEvents, pPages2-pPages)
		}
		same("paused at 300 of 500")
		if s := status(); s.Events-after.Events < 300 {
			t.Fatalf("the replica served %d events of the prefix", s.Events-after.Events)
		}
	})

	t.Run("Guard", func(t *testing.T) {
		// The replica claims more than it holds (a balanced URL, a rebuilt
		// replica): its statements fail and the primary serves the page.
		r := routed.reps.list[0]
		r.state.Store(&replicaState{inUse: true, replayed: 450})
		p := ReadLogParams{After: 100, Limit: 300, MaxBytes: 4 << 20}
		got, err := routed.ReadLog(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := primary.ReadLog(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 300 {
			t.Fatalf("primary: %d events, want 300", len(want))
		}
		requireSameEvents(t, "guarded read", got, want)
		if s := status(); s.Failures != 1 {
			t.Fatalf("after a guarded read failed: %+v", s) // (the woken monitor may already have put it back in use)
		}
		waitStatus("back in use at 300", func(s ReplicaStatus) bool { return s.InUse && s.Replayed == 300 })
	})

	t.Run("Replacement", func(t *testing.T) {
		// Replace event 10 on the primary: the paused replica still holds
		// the old content and must not serve it.
		e := testEvent("10", "replaced")
		if _, err := app.Append(ctx, &AppendRequest{Stream: "s0/x", Events: events(e), Replace: true}); err != nil {
			t.Fatal(err)
		}
		routed.ReplicasReplaced()
		if s := status(); s.InUse || s.Reason != ReplicaReplacement {
			t.Fatalf("after a replacement: %+v", s)
		}
		time.Sleep(100 * time.Millisecond) // several checks: still out of use
		if s := status(); s.InUse || s.Reason != ReplicaReplacement {
			t.Fatalf("paused replica behind a replacement: %+v", s)
		}
		got, err := routed.ReadLog(ctx, ReadLogParams{After: 9, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(got[0].Doc, []byte("replaced")) {
			t.Fatalf("event 10 read as %s", got[0].Doc)
		}
		pair.ResumeReplay(t)
		waitStatus("in use at 500", func(s ReplicaStatus) bool { return s.InUse && s.Replayed == 500 })
		same("caught up")
	})

	t.Run("Lagging", func(t *testing.T) {
		routed.reps.maxLag.Store(int64(300 * time.Millisecond))
		pair.PauseReplay(t)
		appendN(10)
		s := waitStatus("lagging", func(s ReplicaStatus) bool { return !s.InUse })
		if s.Reason != ReplicaLagging || s.Lag < 300*time.Millisecond {
			t.Fatalf("lagging replica: %+v", s)
		}
		same("lagging")
		pair.ResumeReplay(t)
		waitStatus("in use at 510", func(s ReplicaStatus) bool { return s.InUse && s.Replayed == 510 && s.Lag == 0 })
	})

	t.Run("Down", func(t *testing.T) {
		pair.StopReplica(t)
		appendN(10)
		s := waitStatus("unreachable", func(s ReplicaStatus) bool { return !s.InUse })
		if s.Reason != ReplicaUnreachable && s.Reason != ReplicaReadFailed {
			t.Fatalf("stopped replica: %+v", s)
		}
		same("replica down")
		if out := logs.String(); !strings.Contains(out, `msg="read replica out of use: its reads go to the primary"`) ||
			(!strings.Contains(out, "reason=unreachable") && !strings.Contains(out, `reason="a read failed"`)) {
			t.Fatalf("no log line says the stopped replica is out of use:\n%s", out)
		}
		logs.Reset()
		pair.StartReplica(t)
		waitStatus("in use at 520", func(s ReplicaStatus) bool { return s.InUse && s.Replayed == 520 })
		if out := logs.String(); !strings.Contains(out, `msg="read replica in use"`) {
			t.Fatalf("no log line says the replica is back in use:\n%s", out)
		}
		same("replica back")
	})

	t.Run("Several", func(t *testing.T) {
		// Two replicas (here the same standby twice) take turns.
		two, err := Open(ctx, Config{
			DatabaseURL: pair.PrimaryURL, MaxConns: 4,
			ReadReplicaURLs:      []string{pair.ReplicaURL, pair.ReplicaURL},
			ReplicaCheckInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer two.Close()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := two.ReplicaStatuses()
			if st[0].InUse && st[1].InUse {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replicas not in use: %+v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for after := int64(0); after < 500; after += 100 {
			if _, err := two.ReadLog(ctx, ReadLogParams{After: after, Limit: 100}); err != nil {
				t.Fatal(err)
			}
		}
		st := two.ReplicaStatuses()
		if st[0].Name == st[1].Name || st[0].Pages == 0 || st[1].Pages == 0 || st[0].Pages+st[1].Pages != 5 {
			t.Fatalf("two replicas: %+v", st)
		}
		if pages, _ := two.PrimaryReads(); pages != 0 {
			t.Fatalf("the primary served %d pages", pages)
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for the store's concurrent logging.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// requireSameEvents fails unless got and want hold the same events with
// the same content, in the same order.
func requireSameEvents(t *testing.T, label string, got, want []*fossil.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", label, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Number != w.Number || g.Stream != w.Stream || g.Sequence != w.Sequence || !bytes.Equal(g.Doc, w.Doc) {
			t.Fatalf("%s: event %d is %d %s/%d, want %d %s/%d", label, i, g.Number, g.Stream, g.Sequence, w.Number, w.Stream, w.Sequence)
		}
	}
}
