package shardsim_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/shardsim"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const shards = 3

// newShards creates a database per shard, plus the coordinator's, and
// returns a pool on each for each of procs processes (the coordinator's
// last).
func newShards(t *testing.T, procs int) (perProc [][]*pgxpool.Pool, coord *pgxpool.Pool) {
	t.Helper()
	urls := make([]string, shards)
	for s := range urls {
		urls[s] = dbtest.NewDB(t)
	}
	open := func(url, schema string) *pgxpool.Pool {
		p, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		if schema != "" {
			if _, err := p.Exec(context.Background(), schema); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for range procs {
		var pools []*pgxpool.Pool
		for _, u := range urls {
			pools = append(pools, open(u, shardsim.Schema))
		}
		perProc = append(perProc, pools)
	}
	coord = open(dbtest.NewDB(t), shardsim.ConsumerSchema)
	return perProc, coord
}

// appended is what the writers were told: CloudEvent id → position.
type appended struct {
	mu  sync.Mutex
	pos map[string][2]int64 // id → {shard, number}
}

// TestVectorCursorAcrossShards runs two "processes" (an appender per shard
// each, on pools of their own) under eight concurrent writers, single
// events and batches, some with expected sequences, over three shards.
// A follower reads the whole log with a vector cursor, resuming from its
// encoded form on alternating processes; a named consumer commits its
// vector to the coordinator and "crashes" now and then, resuming from the
// stored vector. Each must end with every acknowledged event exactly once,
// every shard's numbers dense and every stream's sequences in order.
func TestVectorCursorAcrossShards(t *testing.T) {
	t.Parallel()
	perProc, coord := newShards(t, 2)
	procs := []*shardsim.Cluster{shardsim.NewCluster(perProc[0]), shardsim.NewCluster(perProc[1])}
	for _, c := range procs {
		defer c.Close()
	}
	ctx := context.Background()

	acked := &appended{pos: map[string][2]int64{}}
	var writers sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			own := int64(0) // events in this writer's own stream
			for k := range 120 {
				c := procs[(w+k)%2]
				stream, expected := fmt.Sprintf("s/%d/%d", w, k%8), int64(0)
				ids := []string{fmt.Sprintf("w%d-%d", w, k)}
				switch k % 5 {
				case 1: // a batch of three, atomically in one stream
					ids = append(ids, ids[0]+"b", ids[0]+"c")
				case 2: // the writer's own stream, with the expected sequence
					stream, expected = fmt.Sprintf("own/%d", w), own+1
				}
				shard, nums, err := c.Append(ctx, stream, ids, expected)
				if err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, k, err)
					return
				}
				if expected > 0 {
					own++
				}
				acked.mu.Lock()
				for i, id := range ids {
					acked.pos[id] = [2]int64{int64(shard), nums[i]}
				}
				acked.mu.Unlock()
			}
		}()
	}
	writing := make(chan struct{})
	go func() { writers.Wait(); close(writing) }()

	follower := &reader{name: "follower", procs: procs}
	consumer := &reader{name: "consumer", procs: procs, coord: coord}
	var readers sync.WaitGroup
	for _, r := range []*reader{follower, consumer} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r.run(t, writing)
		}()
	}
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}

	heads, err := procs[0].Heads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, h := range heads {
		total += h
	}
	if total != int64(len(acked.pos)) {
		t.Fatalf("the shards hold %d events (%v), the writers were acknowledged %d", total, heads, len(acked.pos))
	}
	for s, h := range heads {
		if h == 0 {
			t.Fatalf("shard %d got no event: the streams do not spread (heads %v)", s, heads)
		}
	}
	for _, r := range []*reader{follower, consumer} {
		r.check(t, acked, heads)
	}
	t.Logf("%d events over %d shards (heads %v); follower: %d reads, %d resumes from an encoded cursor; consumer: %d crashes, %d events delivered again after one",
		total, shards, heads, follower.reads, follower.resumes, consumer.crashes, consumer.again)
}

// reader follows the log with a vector cursor. Without coord it is an SSE
// subscriber that reconnects with its cursor's encoded form; with coord a
// named consumer that commits its cursor and, when it "crashes", forgets
// everything but what it processed and resumes from the stored offset.
type reader struct {
	name  string
	procs []*shardsim.Cluster
	coord *pgxpool.Pool

	seen      map[string][2]int64 // id → position, for the check
	streams   map[string][]int64  // stream → sequences in arrival order
	processed shardsim.Vector     // per shard, the last number handled
	reads     int
	resumes   int
	crashes   int
	again     int
}

func (r *reader) run(t *testing.T, writing <-chan struct{}) {
	ctx := context.Background()
	r.seen, r.streams = map[string][2]int64{}, map[string][]int64{}
	r.processed = make(shardsim.Vector, shards)
	cursor := make(shardsim.Vector, shards)
	confirmed := make(shardsim.Vector, shards) // the last commit the coordinator confirmed
	for {
		done := false
		select {
		case <-writing:
			done = true // a last pass after every writer was answered
		default:
		}
		c := r.procs[r.reads%2]
		r.reads++
		events, next, err := c.Read(ctx, cursor, 37)
		if err != nil {
			t.Errorf("%s: read: %v", r.name, err)
			return
		}
		for _, e := range events {
			if e.Number <= r.processed[e.Shard] {
				if r.coord == nil {
					t.Errorf("%s: shard %d event %d again after %d", r.name, e.Shard, e.Number, r.processed[e.Shard])
					return
				}
				r.again++ // a consumer gets again what it had not committed
				continue
			}
			if e.Number != r.processed[e.Shard]+1 {
				t.Errorf("%s: shard %d: event %d after %d", r.name, e.Shard, e.Number, r.processed[e.Shard])
				return
			}
			r.processed[e.Shard] = e.Number
			if _, dup := r.seen[e.ID]; dup {
				t.Errorf("%s: event %s twice", r.name, e.ID)
				return
			}
			r.seen[e.ID] = [2]int64{int64(e.Shard), e.Number}
			r.streams[e.Stream] = append(r.streams[e.Stream], e.Sequence)
		}
		cursor = next
		switch {
		case r.coord == nil && r.reads%3 == 0:
			// Reconnect: the cursor travels as an SSE id.
			v, err := shardsim.ParseVector(cursor.String(), shards)
			if err != nil {
				t.Errorf("%s: %v", r.name, err)
				return
			}
			cursor = v
			r.resumes++
		case r.coord != nil && r.reads%2 == 0:
			if err := shardsim.Commit(ctx, r.coord, r.name, cursor); err != nil {
				t.Errorf("%s: commit: %v", r.name, err)
				return
			}
			confirmed = cursor
		}
		if r.coord != nil && r.reads%7 == 0 {
			// Crash: the cursor is lost; the stored offset is where the
			// consumer resumes. It is at least the last confirmed commit
			// and at most what was processed.
			stored, err := shardsim.Offset(ctx, r.coord, r.name, shards)
			if err != nil {
				t.Errorf("%s: %v", r.name, err)
				return
			}
			for s := range stored {
				if stored[s] < confirmed[s] || stored[s] > r.processed[s] {
					t.Errorf("%s: resumed at %v, confirmed %v, processed %v", r.name, stored, confirmed, r.processed)
					return
				}
			}
			cursor = stored
			r.crashes++
		}
		if done && len(events) == 0 {
			if r.coord != nil {
				if err := shardsim.Commit(ctx, r.coord, r.name, cursor); err != nil {
					t.Errorf("%s: commit: %v", r.name, err)
				}
			}
			return
		}
		if len(events) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (r *reader) check(t *testing.T, acked *appended, heads shardsim.Vector) {
	t.Helper()
	if len(r.seen) != len(acked.pos) {
		t.Fatalf("%s: %d events, want %d", r.name, len(r.seen), len(acked.pos))
	}
	for id, pos := range acked.pos {
		if r.seen[id] != pos {
			t.Fatalf("%s: event %s at %v, acknowledged at %v", r.name, id, r.seen[id], pos)
		}
	}
	for s := range heads {
		if r.processed[s] != heads[s] {
			t.Fatalf("%s: ended at %v, the heads are %v", r.name, r.processed, heads)
		}
	}
	for stream, seqs := range r.streams {
		for i, q := range seqs {
			if q != int64(i+1) {
				t.Fatalf("%s: stream %s: sequence %d at position %d", r.name, stream, q, i+1)
			}
		}
	}
}

// TestExpectedSequenceOnAShard: writers racing to create the same stream
// with expected sequence 1 through two processes' appenders: exactly one
// wins, and the losers consume no number (the shard stays dense).
func TestExpectedSequenceOnAShard(t *testing.T) {
	t.Parallel()
	perProc, _ := newShards(t, 2)
	procs := []*shardsim.Cluster{shardsim.NewCluster(perProc[0]), shardsim.NewCluster(perProc[1])}
	for _, c := range procs {
		defer c.Close()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := procs[i%2].Append(context.Background(), "race/x", []string{fmt.Sprintf("r%d", i)}, 1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, shardsim.ErrSequence):
				lost++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || lost != 19 {
		t.Fatalf("%d won, %d lost; want 1 and 19", won, lost)
	}
	heads, err := procs[0].Heads(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := shardsim.ShardOf("race/x", shards)
	if heads[s] != 1 {
		t.Fatalf("shard %d's head is %d after one stored event: a rejected request consumed a number", s, heads[s])
	}
}

// TestScalarCursorOverShardsLosesEvents is the counter-example that rules
// out the obvious design: one global sequence handing numbers to
// transactions on different shards. A number taken first may commit last,
// so a reader that has seen a larger number skips it for good. The vector
// cursor over per-shard head locks does not: the same interleaving
// loses nothing.
func TestScalarCursorOverShardsLosesEvents(t *testing.T) {
	t.Parallel()
	perProc, coord := newShards(t, 1)
	pools := perProc[0]
	ctx := context.Background()
	for _, p := range pools {
		if _, err := p.Exec(ctx, `CREATE TABLE sim_global (number bigint PRIMARY KEY, id text NOT NULL)`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := coord.Exec(ctx, `CREATE SEQUENCE sim_global_number`); err != nil {
		t.Fatal(err)
	}
	next := func() int64 {
		var n int64
		if err := coord.QueryRow(ctx, `SELECT nextval('sim_global_number')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	readAfter := func(after int64) []int64 {
		var out []int64
		for _, p := range pools {
			rows, _ := p.Query(ctx, `SELECT number FROM sim_global WHERE number > $1`, after)
			nums, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, nums...)
		}
		return out
	}

	// Global sequence: the transaction on shard 0 takes 1, the one on
	// shard 1 takes 2 and commits first.
	tx0, err := pools[0].Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx0.Exec(ctx, `INSERT INTO sim_global VALUES ($1, 'a')`, next()); err != nil {
		t.Fatal(err)
	}
	if _, err := pools[1].Exec(ctx, `INSERT INTO sim_global VALUES ($1, 'b')`, next()); err != nil {
		t.Fatal(err)
	}
	cursor := int64(0)
	for _, n := range readAfter(cursor) {
		cursor = max(cursor, n)
	}
	if err := tx0.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readAfter(cursor); cursor != 2 || len(got) != 0 {
		t.Fatalf("the global sequence: cursor %d, then %v; the interleaving did not happen as planned", cursor, got)
	}
	// Event 1 is committed and no reader at cursor 2 will ever see it.

	// The same interleaving with per-shard numbers under the head lock
	// and a vector cursor.
	c := shardsim.NewCluster(pools)
	defer c.Close()
	s0, s1 := streamOn(0), streamOn(1)
	hold, err := pools[0].Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A transaction on shard 0 holds its head lock: shard 0's appender
	// waits behind it, as a concurrent writer's commit would.
	if _, err := hold.Exec(ctx, `SELECT last_number FROM sim_head FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, _, err := c.Append(ctx, s0, []string{"a"}, 0)
		first <- err
	}()
	if _, _, err := c.Append(ctx, s1, []string{"b"}, 0); err != nil {
		t.Fatal(err)
	}
	v := make(shardsim.Vector, shards)
	got, v, err := c.Read(ctx, v, 100)
	if err != nil || len(got) != 1 || got[0].ID != "b" {
		t.Fatalf("first read: %v %v", got, err)
	}
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	got, _, err = c.Read(ctx, v, 100)
	if err != nil || len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("after the late commit, the vector cursor read %v (%v), want event a", got, err)
	}
}

// streamOn returns a stream name that hashes to shard s.
func streamOn(s int) string {
	for i := 0; ; i++ {
		name := fmt.Sprintf("t/%d", i)
		if shardsim.ShardOf(name, shards) == s {
			return name
		}
	}
}

func TestParseVector(t *testing.T) {
	v := shardsim.Vector{12, 0, 7}
	if v.String() != "v3:12.0.7" {
		t.Fatalf("String: %s", v)
	}
	got, err := shardsim.ParseVector("v3:12.0.7", 3)
	if err != nil || got.String() != "v3:12.0.7" {
		t.Fatalf("ParseVector: %v %v", got, err)
	}
	for _, bad := range []string{"", "12", "v2:1.2", "v3:1.2", "v3:1.2.x", "v3:1.-2.3", "v3:1.2.3.4"} {
		if _, err := shardsim.ParseVector(bad, 3); err == nil {
			t.Errorf("ParseVector(%q) succeeded", bad)
		}
	}
}
