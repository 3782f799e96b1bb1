package subscription_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
	"github.com/fossil-events/fossil/subscription"
)

// pullFrame is one event a member received.
type pullFrame struct {
	member int
	number int64
	stream string
}

// member is one connection to /subscriptions/{id}/sse.
type member struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// join connects member i; its frames go to out.
func join(t *testing.T, srv *testserver.Server, id string, i int, out chan<- pullFrame) *member {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/subscriptions/"+id+"/sse", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("join: status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	m := &member{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				var ev map[string]any
				_ = json.Unmarshal([]byte(line[6:]), &ev)
				n, _ := strconv.ParseInt(id, 10, 64)
				if ev["fossileventnumber"] != float64(n) {
					panic(fmt.Sprintf("frame id %s but data %s", id, line))
				}
				out <- pullFrame{member: i, number: n, stream: ev["fossilstream"].(string)}
			}
		}
	}()
	t.Cleanup(m.leave)
	return m
}

func (m *member) leave() {
	m.cancel()
	<-m.done
}

func next(t *testing.T, frames <-chan pullFrame, timeout time.Duration) pullFrame {
	t.Helper()
	select {
	case f := <-frames:
		return f
	case <-time.After(timeout):
		t.Fatalf("no frame within %s", timeout)
	}
	return pullFrame{}
}

func quiet(t *testing.T, frames <-chan pullFrame, d time.Duration) {
	t.Helper()
	select {
	case f := <-frames:
		t.Fatalf("unexpected frame %+v", f)
	case <-time.After(d):
	}
}

func ack(t *testing.T, srv *testserver.Server, id, verb string, body any) int {
	t.Helper()
	code, _, _ := call(t, http.MethodPost, srv.URL+"/subscriptions/"+id+"/"+verb, body)
	return code
}

func TestPullCompetingConsumers(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	srv.MustPost(t, "s1", testserver.Event{ID: "before"}) // not delivered: the subscription starts after it
	id := create(t, srv, map[string]any{"protocol": "SSE", "config": map[string]string{"acktimeout": "30s"}})["id"].(string)
	frames := make(chan pullFrame, 100)
	join(t, srv, id, 1, frames)
	join(t, srv, id, 2, frames)
	streams := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	var all []int64
	for i := range 3 {
		for _, s := range streams {
			all = append(all, srv.MustPost(t, s, testserver.Event{ID: fmt.Sprintf("%s-%d", s, i)}))
		}
	}

	owner := map[string]int{}
	last := map[string]int64{}
	var got []int64
	for len(got) < len(all) {
		f := next(t, frames, 10*time.Second)
		if o, ok := owner[f.stream]; ok && o != f.member {
			t.Fatalf("stream %s went to members %d and %d", f.stream, o, f.member)
		}
		owner[f.stream] = f.member
		if f.number <= last[f.stream] {
			t.Fatalf("stream %s: %d after %d", f.stream, f.number, last[f.stream])
		}
		last[f.stream] = f.number
		got = append(got, f.number)
		if code := ack(t, srv, id, "ack", map[string]any{"numbers": []int64{f.number}}); code != http.StatusNoContent {
			t.Fatalf("ack %d: %d", f.number, code)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, all) {
		t.Fatalf("received %v, want %v once each", got, all)
	}
	quiet(t, frames, 300*time.Millisecond)
	if members := map[int]bool{}; true {
		for _, m := range owner {
			members[m] = true
		}
		if len(members) != 2 {
			t.Fatalf("streams spread over members %v, want both", owner)
		}
	}
	// Acking twice, or a number never sent → 409.
	if code := ack(t, srv, id, "ack", map[string]any{"numbers": []int64{all[0]}}); code != http.StatusConflict {
		t.Fatalf("second ack: %d", code)
	}
	if code := ack(t, srv, id, "nack", map[string]any{"numbers": []int64{all[0]}, "action": "later"}); code != http.StatusBadRequest {
		t.Fatalf("bad action: %d", code)
	}
	testserver.Eventually(t, 5*time.Second, "status", func() bool {
		st := status(t, srv, id)
		return st["delivered"] == float64(len(all)) && st["lag"] == 0.0
	})
}

func TestPullNackTimeoutAndDisconnect(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	id := create(t, srv, map[string]any{"protocol": "SSE", "config": map[string]string{"acktimeout": "500ms", "maxattempts": "3"}})["id"].(string)
	frames := make(chan pullFrame, 100)
	m1 := join(t, srv, id, 1, frames)

	// nack retry: delivered again; the next event of the stream waits.
	a := srv.MustPost(t, "s", testserver.Event{ID: "a"})
	b := srv.MustPost(t, "s", testserver.Event{ID: "b"})
	if f := next(t, frames, 5*time.Second); f.number != a {
		t.Fatalf("got %d, want %d", f.number, a)
	}
	if code := ack(t, srv, id, "nack", map[string]any{"numbers": []int64{a}}); code != http.StatusNoContent {
		t.Fatalf("nack: %d", code)
	}
	if f := next(t, frames, 5*time.Second); f.number != a {
		t.Fatalf("after nack got %d, want %d again", f.number, a)
	}
	// Not acked within acktimeout: delivered again (third attempt), then
	// parked after maxattempts; b follows.
	if f := next(t, frames, 5*time.Second); f.number != a {
		t.Fatalf("after ack timeout got %d, want %d again", f.number, a)
	}
	if f := next(t, frames, 5*time.Second); f.number != b {
		t.Fatalf("after parking got %d, want %d", f.number, b)
	}
	if code := ack(t, srv, id, "nack", map[string]any{"numbers": []int64{b}, "action": "park"}); code != http.StatusNoContent {
		t.Fatalf("nack park: %d", code)
	}
	testserver.Eventually(t, 5*time.Second, "two parked", func() bool { return status(t, srv, id)["parked"] == 2.0 })
	code, _, out := call(t, http.MethodGet, srv.URL+"/subscriptions/"+id+"/parked", nil)
	if code != http.StatusOK || !strings.Contains(string(out), fmt.Sprintf(`"fossileventnumber":%d,"attempts":3`, a)) ||
		!strings.Contains(string(out), fmt.Sprintf(`"fossileventnumber":%d,"attempts":1`, b)) {
		t.Fatalf("parked: %s", out)
	}

	// A member that disconnects holding an event: another member gets it.
	c := srv.MustPost(t, "t", testserver.Event{ID: "c"})
	if f := next(t, frames, 5*time.Second); f.number != c || f.member != 1 {
		t.Fatalf("got %+v, want %d at member 1", f, c)
	}
	m2 := join(t, srv, id, 2, frames)
	m1.leave()
	if f := next(t, frames, 5*time.Second); f.number != c || f.member != 2 {
		t.Fatalf("after disconnect got %+v, want %d at member 2", f, c)
	}
	if code := ack(t, srv, id, "ack", map[string]any{"numbers": []int64{c}}); code != http.StatusNoContent {
		t.Fatalf("ack: %d", code)
	}
	// Replay delivers the parked events again, in number order.
	if code, _, _ := call(t, http.MethodPost, srv.URL+"/subscriptions/"+id+"/parked/replay", nil); code != http.StatusAccepted {
		t.Fatalf("replay: %d", code)
	}
	for _, want := range []int64{a, b} {
		f := next(t, frames, 5*time.Second)
		if f.number != want {
			t.Fatalf("replay: got %d, want %d", f.number, want)
		}
		if code := ack(t, srv, id, "ack", map[string]any{"numbers": []int64{want}}); code != http.StatusNoContent {
			t.Fatalf("ack replayed %d: %d", want, code)
		}
	}
	testserver.Eventually(t, 5*time.Second, "parked list empty", func() bool { return status(t, srv, id)["parked"] == 0.0 })
	m2.leave()
}

// TestPullThroughAnyProcess: with two Fossil processes on one database
// (behind a load balancer, members land on either), members and acks that
// reach the process not serving the subscription are forwarded to the one
// that is. Every event goes to exactly one member, streams keep their
// member, acks through either process settle, and nack works through the
// forwarding process too. A request already forwarded once is not
// forwarded again: it gets 503 with Retry-After (or 409 for an ack).
func TestPullThroughAnyProcess(t *testing.T) {
	t.Parallel()
	a := testserver.Start(t, fast)
	b := testserver.StartOn(t, a.DBURL, fast)
	id := create(t, a, map[string]any{"protocol": "SSE", "config": map[string]string{"acktimeout": "30s"}})["id"].(string)
	frames := make(chan pullFrame, 100)
	join(t, a, id, 1, frames) // a takes the lease
	join(t, b, id, 2, frames) // forwarded to a
	servers := []*testserver.Server{a, b}
	streams := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	var all []int64
	for i := range 3 {
		for j, s := range streams {
			all = append(all, servers[j%2].MustPost(t, s, testserver.Event{ID: fmt.Sprintf("%s-%d", s, i)}))
		}
	}
	owner := map[string]int{}
	last := map[string]int64{}
	seen := map[int64]int{}
	var got []int64
	var nacked int64
	for len(got) < len(all) {
		f := next(t, frames, 10*time.Second)
		seen[f.number]++
		if o, ok := owner[f.stream]; ok && o != f.member {
			t.Fatalf("stream %s went to members %d and %d", f.stream, o, f.member)
		}
		owner[f.stream] = f.member
		if f.number <= last[f.stream] {
			t.Fatalf("stream %s: %d after %d", f.stream, f.number, last[f.stream])
		}
		if nacked == 0 && f.member == 2 {
			// A nack through b, forwarded to a: the event comes again
			// before the next one of its stream.
			nacked = f.number
			if code := ack(t, b, id, "nack", map[string]any{"numbers": []int64{f.number}}); code != http.StatusNoContent {
				t.Fatalf("nack %d through b: %d", f.number, code)
			}
			continue
		}
		last[f.stream] = f.number
		got = append(got, f.number)
		// Acks alternate between the processes.
		srv := servers[len(got)%2]
		if code := ack(t, srv, id, "ack", map[string]any{"numbers": []int64{f.number}}); code != http.StatusNoContent {
			t.Fatalf("ack %d through %s: %d", f.number, srv.URL, code)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, all) {
		t.Fatalf("received %v, want %v once each", got, all)
	}
	if nacked == 0 {
		t.Fatalf("no event went to the member on b: %v", owner)
	}
	for n, c := range seen {
		if want := 1 + btoi(n == nacked); c != want {
			t.Fatalf("event %d delivered %d times, want %d", n, c, want)
		}
	}
	quiet(t, frames, 300*time.Millisecond)
	testserver.Eventually(t, 5*time.Second, "status", func() bool {
		st := status(t, b, id)
		return st["delivered"] == float64(len(all)) && st["lag"] == 0.0
	})
	// Already forwarded once: not forwarded again.
	code, h, body := call(t, http.MethodGet, b.URL+"/subscriptions/"+id+"/sse", nil, subscription.ForwardedHeader, "elsewhere")
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" || !strings.Contains(string(body), "another Fossil process") {
		t.Fatalf("forwarded member at b: %d %v %s", code, h, body)
	}
	if code, _, _ := call(t, http.MethodPost, b.URL+"/subscriptions/"+id+"/ack", map[string]any{"numbers": []int64{all[0]}}, subscription.ForwardedHeader, "elsewhere"); code != http.StatusConflict {
		t.Fatalf("forwarded ack at b: %d", code)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
