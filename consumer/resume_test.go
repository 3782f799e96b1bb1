package consumer_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// TestCrashResume has a consumer read over /consumer/{name}/sse, commit
// every k events and get killed (TCP reset) between commits, several
// times, while events keep arriving — some while it is connected, some
// while it is away. Each new session must deliver every event after the
// last commit exactly once, in order; overall nothing is lost.
func TestCrashResume(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)

	tests := []struct {
		k     int   // commit every k events
		kills []int // events processed in each session before it is killed
	}{
		{k: 1, kills: []int{13, 29, 8}},
		{k: 7, kills: []int{13, 29, 8}},
		{k: 10, kills: []int{10, 3, 31}}, // a kill right after a commit, and one before any
		{k: 100, kills: []int{13, 29}},   // never commits before the end
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("k=%d", tt.k), func(t *testing.T) {
			t.Parallel()
			prefix := fmt.Sprintf("resume-k%d", tt.k)
			name := "consumer-" + prefix
			path := "/consumer/" + name + "/sse?stream=" + prefix + "/{id}"

			var mu sync.Mutex
			var all []int64 // numbers of the consumer's events, in order
			post := func(n int) error {
				for i := range n {
					mu.Lock()
					id := fmt.Sprintf("%s-%d", prefix, len(all))
					mu.Unlock()
					num, err := postEvent(context.Background(), srv.URL, fmt.Sprintf("%s/%d", prefix, i%3), id)
					if err != nil {
						return err
					}
					// Noise that the consumer must not see.
					if _, err := postEvent(context.Background(), srv.URL, "noise-"+prefix, "noise-"+id); err != nil {
						return err
					}
					mu.Lock()
					all = append(all, num)
					mu.Unlock()
				}
				return nil
			}
			snapshot := func() []int64 {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(all)
			}
			if err := post(40); err != nil {
				t.Fatal(err)
			}

			var lastCommit int64 // 0: none yet, start from the beginning
			delivered := map[int64]int{}
			for session := 0; ; session++ {
				final := session == len(tt.kills)
				// Events arrive while the consumer is away…
				if err := post(5); err != nil {
					t.Fatal(err)
				}
				// …and while it reads.
				var wg sync.WaitGroup
				var liveErr error
				wg.Go(func() { liveErr = post(15) })

				from := lastCommit
				s, _ := openUntilOK(t, srv.URL, path, 10*time.Second)
				var got []int64
				processed := 0
				for final || processed != tt.kills[session] {
					if final && len(got) > 0 {
						wg.Wait() // every event is posted: stop once all are seen
						if want := snapshot(); got[len(got)-1] == want[len(want)-1] {
							break
						}
					}
					f := s.next(t, 10*time.Second)
					got = append(got, f.number)
					delivered[f.number]++
					processed++
					if processed%tt.k == 0 {
						mustCommit(t, srv.URL, name, f.number)
						lastCommit = f.number
					}
				}
				if final {
					s.quiet(t, 300*time.Millisecond)
				}
				s.kill() // crash: no commit of what was processed since the last one
				wg.Wait()
				if liveErr != nil {
					t.Fatal(liveErr)
				}

				// The session saw exactly the events after the offset it
				// started from, in order, without gaps or duplicates.
				want := snapshot()
				start := startIndex(t, want, got)
				if wantStart := slices.Index(want, from) + 1; start != wantStart {
					t.Fatalf("session %d starts at event %d, want %d (right after the committed offset %d)", session, got[0], want[wantStart], from)
				}
				if !slices.Equal(got, want[start:start+len(got)]) {
					t.Fatalf("session %d got %v, want a run of %v", session, got, want)
				}
				if lastCommit > 0 {
					if st := getStatus(t, srv.URL, name); st.Offset != lastCommit {
						t.Fatalf("session %d: committed offset %d, want %d", session, st.Offset, lastCommit)
					}
				}
				t.Logf("session %d: %d events from %d to %d; committed %d", session, len(got), got[0], got[len(got)-1], lastCommit)
				if final {
					break
				}
			}

			// At least once overall: every event was delivered; the only
			// repeats are events processed after a commit and before a crash.
			want := snapshot()
			repeats := 0
			for _, n := range want {
				switch c := delivered[n]; {
				case c == 0:
					t.Fatalf("event %d was never delivered", n)
				case c > 1:
					repeats += c - 1
				}
			}
			if len(delivered) != len(want) {
				t.Fatalf("%d distinct events delivered, want %d", len(delivered), len(want))
			}
			t.Logf("%d events, %d redeliveries after crashes", len(want), repeats)
		})
	}
}

// startIndex returns where got starts in want, failing when it does not
// start with an element of want.
func startIndex(t *testing.T, want, got []int64) int {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("a session received nothing")
	}
	i := slices.Index(want, got[0])
	if i < 0 || i+len(got) > len(want) {
		t.Fatalf("session starts at %d, which is not one of the consumer's events %v", got[0], want)
	}
	return i
}
