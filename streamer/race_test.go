package streamer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/internal/testserver"
)

// TestOrderingRace reproduces the classic event-store race: a transaction
// holding a lower event number commits after writers that came later. With
// sequence-assigned numbers, a reader could see the higher number first,
// move its cursor past the lower one and never see it.
//
// Here a "slow writer" on its own connection does what an appender does —
// lock the head row, insert the next number, move the head, notify — and
// then stalls before committing. The test shows that the later writers of
// two server processes cannot get a number meanwhile (they wait on the head
// row lock, and no POST returns), that nothing past the old head becomes
// visible, and that after the slow writer commits (or rolls back, freeing
// its number) every subscriber — one connected before, one connected in
// between, one resuming from the highest visible cursor, one on the other
// process — receives every event exactly once, in order, without a gap.
func TestOrderingRace(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		name := "SlowWriterRollsBack"
		if commit {
			name = "SlowWriterCommitsLast"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testOrderingRace(t, commit)
		})
	}
}

func testOrderingRace(t *testing.T, commit bool) {
	ctx := t.Context()
	srv := testserver.Start(t)
	srv2 := testserver.StartOn(t, srv.DBURL) // a second process on the same log
	client := newClient(t)

	const before = 3
	for i := 1; i <= before; i++ {
		srv.MustPost(t, "race/pre", testserver.Event{ID: fmt.Sprintf("pre-%d", i)})
	}
	early := srv.OpenSSE(t, "/sse?stream=race/{id}")
	wantRange(t, "early subscriber before the race", frameNumbers(early.Next(t, before, 5*time.Second)), 1, before)

	// The slow writer: takes the head row lock and the next number, writes
	// its event, and stalls.
	conn, err := pgx.Connect(ctx, srv.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var head int64
	if err := tx.QueryRow(ctx, `SELECT last_number FROM fossil_head FOR UPDATE`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	if head != before {
		t.Fatalf("head = %d, want %d", head, before)
	}
	slow := head + 1
	doc := `{"specversion":"1.0","id":"slow","source":"/test","type":"test.event","data":{}}`
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc) VALUES ($1, 'race/slow', 1, 'slow', '/test', 'test.event', $2)`, []any{slow, doc}},
		{`INSERT INTO fossil_streams (name) VALUES ('race/slow')`, nil},
		{`UPDATE fossil_head SET last_number = $1`, []any{slow}},
		{`SELECT pg_notify('fossil_events', $1)`, []any{fmt.Sprint(slow)}},
	} {
		if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}

	// Later writers, half through each process.
	const writers = 20
	results := make(chan postResult, writers)
	for i := range writers {
		target := srv.URL
		if i%2 == 1 {
			target = srv2.URL
		}
		go func() {
			results <- post(client, target, "race/shared", fmt.Sprintf("w-%d", i), fmt.Sprintf(`{"w":%d}`, i))
		}()
	}

	// Both processes' appenders end up waiting for the head row lock.
	testserver.Eventually(t, 10*time.Second, "both appenders waiting for the head row lock", func() bool {
		var waiting int
		err := srv.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%fossil_head%'`).Scan(&waiting)
		return err == nil && waiting == 2
	})
	if n := len(results); n != 0 {
		r := <-results
		t.Fatalf("%d POSTs returned while the slow writer holds the head row lock; first: status %d number %d", n, r.status, r.number)
	}

	// Nothing past the old head is visible: neither in the log nor to a
	// subscriber connecting now, nor to one resuming from the newest
	// cursor anyone can have seen.
	if got := readLogNumbers(t, srv.URL+"/events?after=0"); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("visible log during the slow transaction: %v", got)
	}
	between := srv.OpenSSE(t, "/sse?stream=race/{id}")
	resumer := srv.OpenSSE(t, "/sse?stream=race/{id}", "Last-Event-Id", fmt.Sprint(head))
	other := srv2.OpenSSE(t, "/sse?stream=race/{id}", "Last-Event-Id", "1")
	wantRange(t, "subscriber connected during the slow transaction", frameNumbers(between.Next(t, before, 5*time.Second)), 1, before)
	wantRange(t, "other process's subscriber", frameNumbers(other.Next(t, before-1, 5*time.Second)), 2, before)

	if commit {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	} else if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	var numbers []int64
	for range writers {
		r := <-results
		numbers = append(numbers, mustOK(t, "writer", r))
	}
	slices.Sort(numbers)
	first := slow // the slow writer's number is free again after a rollback
	if commit {
		first = slow + 1
	}
	wantRange(t, "numbers of the later writers", numbers, first, first+writers-1)
	last := first + writers - 1

	wantRange(t, "early subscriber", frameNumbers(early.Next(t, int(last-before), 10*time.Second)), before+1, last)
	wantRange(t, "subscriber connected in between", frameNumbers(between.Next(t, int(last-before), 10*time.Second)), before+1, last)
	wantRange(t, "subscriber resuming from the highest cursor", frameNumbers(resumer.Next(t, int(last-head), 10*time.Second)), head+1, last)
	wantRange(t, "other process's subscriber", frameNumbers(other.Next(t, int(last-before), 10*time.Second)), before+1, last)
	late := srv2.OpenSSE(t, "/sse?stream=race/{id}", "Last-Event-Id", fmt.Sprint(last-5))
	wantRange(t, "late resumer", frameNumbers(late.Next(t, 5, 5*time.Second)), last-4, last)
	if got := readLogNumbers(t, srv.URL+"/events?after=0"); !slices.Equal(got, seq(1, last)) {
		t.Fatalf("log after the race: %v", got)
	}

	// Sequences in the shared stream are dense in commit order too.
	var seqs []int64
	rows, err := srv.Pool.Query(ctx, `SELECT sequence FROM fossil_events WHERE stream = 'race/shared' ORDER BY number`)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	wantRange(t, "sequences of race/shared in number order", seqs, 1, writers)
	for _, s := range []*testserver.SSE{early, between, resumer, other, late} {
		s.Quiet(t, 100*time.Millisecond)
	}
}

// readLogNumbers GETs a page of the global log and returns its numbers.
func readLogNumbers(t testing.TB, url string) []int64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	var events []struct {
		Number int64 `json:"fossileventnumber"`
	}
	if err := json.Unmarshal(body, &events); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.Number
	}
	return out
}

// seq returns from..to.
func seq(from, to int64) []int64 {
	out := make([]int64, 0, to-from+1)
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}
