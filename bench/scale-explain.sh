#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of Fossil's read queries on the database at
# URL $1 (a log filled by bench/scale), as bench/scale.sh records them.
# The statements are those of store/reader.go, store/catalogue.go and
# store/events.go with the values a catch-up from event 0 would bind.
set -euo pipefail
URL=$1
COLS='number, stream, sequence, id, source, type, subject, time, expect_ack, doc, committed_at'
ECOLS='e.number, e.stream, e.sequence, e.id, e.source, e.type, e.subject, e.time, e.expect_ack, e.doc, e.committed_at'
HEAD=$(psql -X -At -c 'SELECT last_number FROM fossil_head' "$URL")
page() { # names-array-expression after end limit
	cat <<SQL
EXPLAIN (ANALYZE, BUFFERS)
SELECT $ECOLS
FROM unnest($1) AS s(name)
CROSS JOIN LATERAL (
  SELECT $COLS FROM fossil_events
  WHERE (stream COLLATE "C", number) > (s.name, $2::bigint)
    AND (stream COLLATE "C", number) <= (s.name, $3::bigint)
  ORDER BY stream COLLATE "C", number
  LIMIT $4) AS e
ORDER BY e.number
LIMIT $4;
SQL
}
# The server's reading sessions: custom plans, no JIT (store.Open).
run() {
	printf '\n-- %s\n' "$1"
	psql -X -q -c "SET plan_cache_mode = force_custom_plan" -c "SET jit = off" -c "$2" "$URL"
}
# names LIKE-PATTERN: the matching stream names as an array literal, as the
# server binds them (the planner then knows how many there are).
names() {
	psql -X -At -c "SELECT 'ARRAY[' || string_agg(quote_literal(name), ',') || ']::text[]' FROM fossil_streams WHERE name LIKE '$1'" "$URL"
}
echo "-- $(psql -X -At -c "SELECT count(*) || ' streams, ' || pg_size_pretty(pg_total_relation_size('fossil_events')) FROM fossil_streams" "$URL"), head $HEAD"
run "catalogue: streams created in the last 100,000 events" \
	"EXPLAIN (ANALYZE, BUFFERS) SELECT stream FROM fossil_events WHERE sequence = 1 AND number > $((HEAD > 100000 ? HEAD - 100000 : 0)) AND number <= $HEAD ORDER BY number"
run "selective page: hidden/{id} (names from the catalogue), from 0 to the head" \
	"$(page "$(names 'hidden/%')" 0 "$HEAD" 1000)"
run "selective page: {cat}/needle, from 0 to the head" \
	"$(page "$(names '%/needle')" 0 "$HEAD" 1000)"
run "selective page: big/one from the middle of the log, window to the head" \
	"$(page "ARRAY['big/one']" $((HEAD / 2)) "$HEAD" 1000)"
run "global page (primary key): 1000 events from the middle" \
	"EXPLAIN (ANALYZE, BUFFERS) SELECT $COLS FROM fossil_events WHERE number > $((HEAD / 2)) AND number <= $HEAD ORDER BY number LIMIT 1000"
run "for comparison, the previous prefix read: hidden/ as a range of the (stream text_pattern_ops, sequence) index, by number" \
	"EXPLAIN (ANALYZE, BUFFERS) SELECT $COLS FROM fossil_events WHERE number > 0 AND (stream ~>=~ 'hidden/' AND stream ~<~ 'hidden0') ORDER BY number LIMIT 1000"
run "for comparison, the previous literal read: big/one by number" \
	"EXPLAIN (ANALYZE, BUFFERS) SELECT $COLS FROM fossil_events WHERE number > 0 AND stream = ANY(ARRAY['big/one']) ORDER BY number LIMIT 1000"
