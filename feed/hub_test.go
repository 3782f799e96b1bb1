package feed

import (
	"fmt"
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

// hubEvents returns events numbered from..to in stream s.
func hubEvents(from, to int64) []*fossil.Event {
	var out []*fossil.Event
	for n := from; n <= to; n++ {
		out = append(out, &fossil.Event{
			Number: n, Sequence: n, Stream: "s", ID: fmt.Sprint(n), Source: "/t", Type: "t",
			Doc: fmt.Appendf(nil, `{"specversion":"1.0","id":"%d","source":"/t","type":"t"}`, n),
		})
	}
	return out
}

// TestHubPublish covers the hand-over of locally committed events: the hub
// takes them only when streams are open and they follow its newest event
// without a gap, and a replacement drops what it had cached. The tailer's
// reads of the log are covered end to end by the streamer tests.
func TestHubPublish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		clients  int64
		cached   [2]int64 // events from..to already in the ring (0..0: none)
		last     int64    // h.last before Publish
		publish  [2]int64
		replaced bool
		want     bool
		wantLast int64
		wantRing []int64 // numbers in the ring afterwards
	}{
		{name: "FollowsTheRing", clients: 1, cached: [2]int64{1, 3}, last: 3, publish: [2]int64{4, 6}, want: true, wantLast: 6, wantRing: []int64{1, 2, 3, 4, 5, 6}},
		{name: "FollowsAnEmptyRing", clients: 2, last: 10, publish: [2]int64{11, 12}, want: true, wantLast: 12, wantRing: []int64{11, 12}},
		// Nobody streams: the hub follows the head without rendering (the
		// tailer need not read it), and drops what it cached.
		{name: "NoStreamsOpen", clients: 0, cached: [2]int64{1, 3}, last: 3, publish: [2]int64{4, 6}, want: true, wantLast: 6, wantRing: nil},
		{name: "GapBeforeTheGroup", clients: 1, cached: [2]int64{1, 3}, last: 3, publish: [2]int64{5, 6}, want: false, wantLast: 3, wantRing: []int64{1, 2, 3}},
		{name: "AlreadyLoadedByTheTailer", clients: 1, cached: [2]int64{1, 6}, last: 6, publish: [2]int64{4, 6}, want: false, wantLast: 6, wantRing: []int64{1, 2, 3, 4, 5, 6}},
		{name: "ReplacementDropsTheCache", clients: 1, cached: [2]int64{1, 3}, last: 3, publish: [2]int64{4, 5}, replaced: true, want: true, wantLast: 5, wantRing: []int64{4, 5}},
		{name: "ReplacementOnly", clients: 1, cached: [2]int64{1, 3}, last: 3, replaced: true, want: false, wantLast: 3, wantRing: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := New(Config{RingEvents: 16})
			h.clients.Store(tt.clients)
			if tt.cached[1] > 0 {
				frames := make([]*frame, 0)
				for _, e := range hubEvents(tt.cached[0], tt.cached[1]) {
					frames = append(frames, newFrame(e, e.CommittedAt))
				}
				h.last = tt.cached[0] - 1
				h.push(frames)
			}
			h.last = tt.last
			woken := h.wait()
			var evs []*fossil.Event
			if tt.publish[1] > 0 {
				evs = hubEvents(tt.publish[0], tt.publish[1])
			}
			if got := h.Publish(evs, tt.replaced); got != tt.want {
				t.Fatalf("Publish = %v, want %v", got, tt.want)
			}
			if h.Last() != tt.wantLast {
				t.Errorf("Last = %d, want %d", h.Last(), tt.wantLast)
			}
			select {
			case <-woken:
				if !tt.want {
					t.Error("waiters were woken although nothing was taken")
				}
			default:
				if tt.want {
					t.Error("waiters were not woken")
				}
			}
			var ring []int64
			for i := 0; i < h.count; i++ {
				ring = append(ring, h.ring[(h.start+i)%len(h.ring)].number)
			}
			if fmt.Sprint(ring) != fmt.Sprint(tt.wantRing) {
				t.Fatalf("ring holds %v, want %v", ring, tt.wantRing)
			}
			if tt.want && tt.clients > 0 {
				// The frames are served from the ring, rendered as the
				// tailer would have rendered them.
				frames, ok := h.fromRing(tt.publish[0]-1, 100, 1<<20)
				if !ok || len(frames) != int(tt.publish[1]-tt.publish[0]+1) {
					t.Fatalf("fromRing(%d) = %d frames, %v", tt.publish[0]-1, len(frames), ok)
				}
				for i, f := range frames {
					if want := appendFrame(nil, evs[i]); string(f.data) != string(want) {
						t.Errorf("frame %d = %q, want %q", f.number, f.data, want)
					}
				}
			}
		})
	}
}
