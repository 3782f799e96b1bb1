// Command pgxfloor measures what a Go program pays for raw's 1-client
// INSERT: the statement of bench/raw_single.sql, one transaction at a
// time, sent with pgx (Fossil's driver) instead of pgbench. Beside
// pgbench's figure of the same moment it shows how much of the lone
// shape's gap to raw is the cost of a Go client of PostgreSQL on this
// machine (the runtime's thread hand-offs, pgx), before anything of
// Fossil's own.
//
//	RAW_SHAPES=single:1 bench/pgbench.sh      # creates fossil_bench_raw
//	go run ./bench/pgxfloor -url postgres://postgres@127.0.0.1:5432/fossil_bench_raw
//
// The database needs bench/pgbench.sh's table and its sequence raw_number.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/bench/internal/rtt"
)

// insertSQL is bench/raw_single.sql with its pgbench variables as
// parameters: $1 the stream's number, $2 the rest of the document.
const insertSQL = `INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
SELECT n, 'bench/raw/s' || $1::text, n, 'raw-' || n, '/pgbench', 'bench.event',
       ('{"specversion":"1.0","id":"raw-' || n || '",' || $2::text)::json
FROM (SELECT nextval('raw_number') AS n) AS t`

func main() {
	url := flag.String("url", "postgres://postgres@127.0.0.1:5432/fossil_bench_raw", "the database of bench/pgbench.sh")
	n := flag.Int("n", 4000, "transactions")
	flag.Parse()
	r, err := measure(context.Background(), *url, *n)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pgxfloor: INSERT transactions:", r)
}

// measure runs n INSERT transactions one after the other on one
// connection, after one unmeasured to prepare the statement.
func measure(ctx context.Context, url string, n int) (rtt.Result, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return rtt.Result{}, err
	}
	defer conn.Close(ctx)
	rest := `"source":"/pgbench","type":"bench.event","data":{"d":"` + strings.Repeat("x", 500) + `"}}`
	if _, err := conn.Exec(ctx, insertSQL, "0", rest); err != nil {
		return rtt.Result{}, err
	}
	return rtt.Measure(n, func(i int) error {
		_, err := conn.Exec(ctx, insertSQL, strconv.Itoa(1+i%1000), rest)
		return err
	})
}
