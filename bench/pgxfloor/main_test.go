package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/internal/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestMeasure(t *testing.T) {
	url := dbtest.NewDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SEQUENCE raw_number"); err != nil {
		t.Fatal(err)
	}
	r, err := measure(ctx, url, 50)
	if err != nil {
		t.Fatal(err)
	}
	var rows, streams int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT stream) FROM fossil_events WHERE source = '/pgbench' AND (doc->'data'->>'d') LIKE 'xxx%'").Scan(&rows, &streams); err != nil {
		t.Fatal(err)
	}
	if rows != 51 || streams != 51 { // the unmeasured one and 50
		t.Fatalf("%d rows in %d streams, want 51 in 51", rows, streams)
	}
	if r.N != 50 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Fatalf("result %+v", r)
	}
}

func TestMeasureWithoutTheTable(t *testing.T) {
	url := dbtest.NewDB(t) // no raw_number sequence
	if _, err := measure(context.Background(), url, 3); err == nil || !strings.Contains(err.Error(), "raw_number") {
		t.Fatalf("err = %v, want the missing sequence named", err)
	}
}
