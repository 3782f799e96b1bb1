package collector_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCollectConcurrentAppends: 64 clients append over HTTP at once, to
// one stream and to many streams. Every request must succeed, and the log
// must hold exactly the numbers 1..N with dense sequences per stream.
func TestCollectConcurrentAppends(t *testing.T) {
	t.Parallel()

	const clients, requests = 64, 50
	tests := []struct {
		name   string
		stream func(client, req int) string
	}{
		{name: "OneStream", stream: func(int, int) string { return "shared" }},
		{name: "ManyStreams", stream: func(client, _ int) string { return fmt.Sprintf("client/%d", client) }},
		{name: "Mixed", stream: func(client, req int) string {
			if (client+req)%2 == 0 {
				return "shared"
			}
			return fmt.Sprintf("client/%d", client%8)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var (
				events  atomic.Int64
				mu      sync.Mutex
				numbers = map[int64]bool{}
				failed  []string
				wg      sync.WaitGroup
			)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for c := range clients {
				wg.Go(func() {
					for r := range requests {
						evs := []attrs{newAttrs(fmt.Sprintf("c%d-r%d", c, r))}
						m := binary
						switch r % 10 {
						case 3:
							m = structured
						case 7:
							m = batch
							evs = append(evs, newAttrs(fmt.Sprintf("c%d-r%d-b", c, r)), newAttrs(fmt.Sprintf("c%d-r%d-c", c, r)))
						}
						h, body := encode(t, m, tt.stream(c, r), evs...)
						res, err := b.do(ctx, h, body)
						mu.Lock()
						switch {
						case err != nil:
							failed = append(failed, err.Error())
						case res.status != http.StatusOK:
							failed = append(failed, fmt.Sprintf("%d %s", res.status, res.body))
						default:
							pos, perr := decodePositions(res.body)
							if perr != nil || len(pos) != len(evs) {
								failed = append(failed, fmt.Sprintf("body %s: %v", res.body, perr))
							}
							for _, p := range pos {
								if numbers[p.Number] {
									failed = append(failed, fmt.Sprintf("number %d answered twice", p.Number))
								}
								numbers[p.Number] = true
							}
							events.Add(int64(len(evs)))
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(failed) > 0 {
				t.Fatalf("%d requests failed, first: %s", len(failed), failed[0])
			}
			n := events.Load()
			if want := int64(clients * (requests + 2*requests/10)); n != want { // every tenth request is a batch of 3
				t.Fatalf("%d events acknowledged, want %d", n, want)
			}
			b.requireDense(t, n)
			for i := int64(1); i <= n; i++ {
				if !numbers[i] {
					t.Fatalf("number %d was never answered", i)
				}
			}
		})
	}
}

// TestCollectFailedRequestsLeaveNoHole mixes requests that fail inside the
// appender (sequence conflicts, id conflicts, replacements of unknown
// events, duplicate ids in a batch) and requests that clients abandon into
// concurrent traffic. Failed requests consume no number: the log stays
// dense.
func TestCollectFailedRequestsLeaveNoHole(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// An event whose id later requests reuse with other content.
	requireOK(t, postEvent(t, b, binary, "s0", newAttrs("taken")), false)

	const clients, requests = 32, 40
	type outcome struct {
		kind   string
		status int
		events int
		err    error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for c := range clients {
		wg.Go(func() {
			for r := range requests {
				id := fmt.Sprintf("c%d-r%d", c, r)
				stream := fmt.Sprintf("s%d", c%4)
				var (
					h    http.Header
					body []byte
					kind string
					n    = 1
				)
				reqCtx := ctx
				switch r % 8 {
				case 1:
					kind = "sequence"
					h, body = encode(t, binary, stream, newAttrs(id))
					h.Set("Fossil-Expected-Sequence-Number", "1000000")
				case 2:
					kind = "conflict"
					taken := newAttrs("taken")
					taken["data"] = id
					h, body = encode(t, batch, stream, newAttrs(id), taken)
				case 3:
					kind = "replace"
					h, body = encode(t, binary, stream, newAttrs(id))
					h.Set("Fossil-Replace", "true")
				case 4:
					kind = "twice"
					h, body = encode(t, batch, stream, newAttrs(id), newAttrs(id+"-x"), newAttrs(id))
				case 5:
					kind = "abandoned"
					h, body = encode(t, structured, stream, newAttrs(id))
					var cancelReq context.CancelFunc
					reqCtx, cancelReq = context.WithTimeout(ctx, time.Duration(r%4)*time.Millisecond)
					defer cancelReq()
				default:
					kind = "ok"
					h, body = encode(t, batch, stream, newAttrs(id), newAttrs(id+"-2"))
					n = 2
				}
				res, err := b.do(reqCtx, h, body)
				mu.Lock()
				outcomes = append(outcomes, outcome{kind: kind, status: res.status, events: n, err: err})
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	want := map[string]int{"ok": 200, "sequence": 409, "conflict": 409, "replace": 404, "twice": 400}
	var committed, abandoned int64
	for _, o := range outcomes {
		if o.kind == "abandoned" {
			if o.err == nil && o.status == http.StatusOK {
				committed++
			} else if o.err == nil {
				t.Errorf("abandoned request answered %d", o.status)
			} else {
				abandoned++ // may or may not be stored
			}
			continue
		}
		if o.err != nil || o.status != want[o.kind] {
			t.Errorf("%s request: status %d, error %v; want %d", o.kind, o.status, o.err, want[o.kind])
		}
		if o.kind == "ok" {
			committed += int64(o.events)
		}
	}
	s := b.logState(t)
	if s.count < 1+committed || s.count > 1+committed+abandoned {
		t.Errorf("%d events stored, want between %d and %d", s.count, 1+committed, 1+committed+abandoned)
	}
	b.requireDense(t, s.count)
	t.Logf("%d requests, %d events stored, %d abandoned by their client", len(outcomes), s.count, abandoned)
}

// TestCollectExpectedSequenceRace: writers race with the same
// Fossil-Expected-Sequence-Number; exactly one wins each round.
func TestCollectExpectedSequenceRace(t *testing.T) {
	t.Parallel()
	b := setup(t)

	const writers, rounds = 20, 3
	for round := range rounds {
		expected := round + 1 // the stream holds round events
		start := make(chan struct{})
		results := make([]response, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			m := []mode{binary, structured, batch}[w%3]
			h, body := encode(t, m, "race", newAttrs(fmt.Sprintf("round%d-writer%d", round, w)))
			h.Set("Fossil-Expected-Sequence-Number", fmt.Sprint(expected))
			wg.Go(func() {
				<-start
				results[w], errs[w] = b.do(context.Background(), h, body)
			})
		}
		close(start)
		wg.Wait()

		var won, lost int
		for w, res := range results {
			if errs[w] != nil {
				t.Fatalf("writer %d: %v", w, errs[w])
			}
			switch res.status {
			case http.StatusOK:
				won++
				pos := requireOK(t, res, false)
				if pos[0].Sequence != int64(expected) {
					t.Errorf("winner got sequence %d, want %d", pos[0].Sequence, expected)
				}
			case http.StatusConflict:
				lost++
				p := requireProblem(t, res, http.StatusConflict)
				if p.ExpectedSequence == nil || *p.ExpectedSequence != int64(expected) || p.CurrentSequence == nil || *p.CurrentSequence != int64(expected) {
					t.Errorf("loser: expected_sequence/current_sequence = %v/%v, want %d/%d", p.ExpectedSequence, p.CurrentSequence, expected, expected)
				}
			default:
				t.Errorf("writer %d: status %d: %s", w, res.status, res.body)
			}
		}
		if won != 1 || lost != writers-1 {
			t.Fatalf("round %d: %d won and %d lost, want 1 and %d", round, won, lost, writers-1)
		}
		b.requireDense(t, int64(round+1))
	}
}

func decodePositions(body []byte) ([]position, error) {
	var v struct {
		Events []position `json:"events"`
	}
	err := jsonUnmarshal(body, &v)
	return v.Events, err
}
