#!/usr/bin/env bash
# `make bench-scale`: Fossil's costs at a large log beside the same figures
# at 10k events (docs/PERFORMANCE.md, "At scale").
#
# For each size (10,000 and SCALE_EVENTS, default 10,000,000) it uses the
# scratch database fossil_scale_<size> on the PostgreSQL server at
# $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres; the
# role needs CREATEDB): a database that already holds that many events is
# reused, a smaller one is filled up to the size. It starts bin/fossil on
# 127.0.0.1 (random port) and
#   1. fills (bench/scale): batches of 100 over SCALE_STREAMS streams,
#      default 100,000, Zipf-skewed, plus the selective streams the
#      measurements read. An empty database is filled by one POST /import
#      of the generated log with salts and leaf hashes (the events, the
#      stream table and the Merkle tree in one transaction: minutes for
#      10M events, where the HTTP batch path takes hours); a smaller one
#      is extended through the HTTP batch path;
#   2. VACUUM (ANALYZE)s fossil_events (statistics and visibility map as
#      autovacuum would leave them);
#   3. measures SSE catch-up (literal small stream, literal 100k-event
#      stream, prefix template, template without a literal prefix), a
#      subscriber at the head, /events paging, /events/{n} and a stream
#      read (bench/scale --measure), then single and batch appends with
#      `fossil bench` (SCALE_APPEND_SECONDS each, default 10), the
#      server's resident memory, and its startup time on the filled log;
#   4. prints EXPLAIN (ANALYZE, BUFFERS) of the read queries at the large
#      size into $BENCH_OUT/scale-explain.txt.
# The 10,000-event database is filled afresh each run; appends and markers
# add ~100,000 events per run to the large one (1 % of 10M); `make
# db/reset-scale` drops them.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${SCALE_EVENTS:-10000000}
STREAMS=${SCALE_STREAMS:-100000}
APPEND_S=${SCALE_APPEND_SECONDS:-10}
OUT=${BENCH_OUT:-bin/bench}
ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

say() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'bench/scale.sh: %s\n' "$*" >&2
	exit 1
}
for tool in jq psql curl; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install jq postgresql-client curl)"
done
psql -X -q -c 'SELECT 1' "$ADMIN_URL" >/dev/null || die "no PostgreSQL at $ADMIN_URL (set PG_ADMIN_URL)"
mkdir -p "$OUT"
go build -o bin/fossil . && go build -o bin/scale ./bench/scale

SERVER_PID=
stop_server() {
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=
}
trap stop_server EXIT
trap 'exit 130' INT TERM

db_url() {
	local base=${ADMIN_URL%%\?*}
	printf '%s/%s' "${base%/*}" "$1"
}

# start_server URL LOG: start bin/fossil on URL, wait until it listens and
# set SERVER_PID and ADDR.
start_server() {
	# A long body timeout: an empty log is filled by one POST /import.
	FOSSIL_BODY_TIMEOUT=${FOSSIL_BODY_TIMEOUT:-4h} bin/fossil server --addr 127.0.0.1:0 --database-url "$1" >"$2" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 1 6000); do
		grep -q 'msg="fossil is listening"' "$2" && break
		kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -n 5 "$2")"
		sleep 0.05
	done
	ADDR=$(sed -n 's/.*msg="fossil is listening" addr=\([^ ]*\).*/\1/p' "$2")
	[ -n "$ADDR" ] || die "the server did not start: $(tail -n 5 "$2")"
}

# run_size SIZE: fill (or reuse) fossil_scale_SIZE and measure it.
run_size() {
	local size=$1 db="fossil_scale_$1" url log have addr
	url=$(db_url "$db")
	if [ "$size" = 10000 ]; then
		# The small log is filled afresh each run (seconds): the appends
		# of a run add tens of thousands of events to it.
		psql -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" "$ADMIN_URL" >/dev/null
	fi
	if [ -z "$(psql -X -At -c "SELECT 1 FROM pg_database WHERE datname = '$db'" "$ADMIN_URL")" ]; then
		psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" "$ADMIN_URL" >/dev/null
	fi
	log="$OUT/scale-server-$size.log"
	start_server "$url" "$log"
	addr=$ADDR
	have=$(psql -X -At -c 'SELECT last_number FROM fossil_head' "$url")
	say "$db: $have events; filling to $size"
	bin/scale --url "http://$addr" --have "$have" --events "$size" --streams "$STREAMS"
	# What autovacuum does to an insert-only table sooner or later: the
	# statistics, and the visibility map that lets index-only scans (the
	# catalogue's refresh) skip the heap. Quick when nothing changed.
	psql -X -q -c 'VACUUM (ANALYZE) fossil_events' -c 'ANALYZE fossil_streams' "$url"
	say "$db: $(psql -X -At -c "SELECT pg_size_pretty(pg_total_relation_size('fossil_events'))" "$url") in fossil_events"
	bin/scale --url "http://$addr" --measure --label "$size" --server-pid "$SERVER_PID" >"$OUT/scale-$size.json"
	say "$db: appends (${APPEND_S}s each)"
	local mode
	for mode in single batch; do
		local lsn0 head0 lsn1 head1 args=(--clients 64)
		[ "$mode" = batch ] && args=(--clients 16 --batch 100)
		lsn0=$(psql -X -At -c 'SELECT pg_current_wal_lsn()' "$url")
		head0=$(psql -X -At -c 'SELECT last_number FROM fossil_head' "$url")
		bin/fossil bench --url "http://$addr" --quiet --json "${args[@]}" --streams 1000 --duration "${APPEND_S}s" >"$OUT/scale-$size-$mode.json"
		lsn1=$(psql -X -At -c 'SELECT pg_current_wal_lsn()' "$url")
		head1=$(psql -X -At -c 'SELECT last_number FROM fossil_head' "$url")
		# WAL of the whole server during the run (other databases too, if busy).
		psql -X -At -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / greatest($head1 - $head0, 1))" "$url" >"$OUT/scale-$size-$mode-wal.txt"
	done
	psql -X -At -F ' ' -c "SELECT pg_relation_size('fossil_events'), pg_total_relation_size('fossil_events'), pg_indexes_size('fossil_events'), (SELECT last_number FROM fossil_head) FROM fossil_head" "$url" >"$OUT/scale-$size-size.txt"
	psql -X -At -F ' ' -c "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes WHERE relname = 'fossil_events' ORDER BY 1" "$url" >"$OUT/scale-$size-indexes.txt"
	# Resident memory after the measurements, and its peak (which, when
	# this run filled the database, includes the import).
	awk '/^VmRSS|^VmHWM/ { printf "%s %d MB  ", $1, $2 / 1024 }' "/proc/$SERVER_PID/status" >"$OUT/scale-$size-rss.txt"
	stop_server
	# Startup: from exec to listening (migrations checked, head and
	# signing key read), on the filled database.
	local t0 t1
	t0=$(date +%s%N)
	start_server "$url" "$log.restart"
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000)) >"$OUT/scale-$size-startup.txt"
	stop_server
}

explain() {
	local url
	url=$(db_url "fossil_scale_$N")
	bash bench/scale-explain.sh "$url" >"$OUT/scale-explain.txt"
}

run_size 10000
run_size "$N"
explain

rate() { jq -r '.writers.events_per_second // .events_per_second // empty' "$1" 2>/dev/null | awk '{ printf "%.0f", $1 }'; }
{
	printf '%-48s %14s %14s\n' "make bench-scale" "10k events" "$N events"
	jq -r --slurpfile big "$OUT/scale-$N.json" '
		.results as $small | $big[0].results as $b |
		range(0; $small | length) as $i |
		[$small[$i].name, ($small[$i].value | tostring), ($b[$i].value | tostring)] | @tsv' "$OUT/scale-10000.json" |
		awk -F'\t' '{ printf "%-48s %14.1f %14.1f\n", $1, $2, $3 }'
	printf '%-48s %14s %14s\n' "append single events (events/s)" "$(rate "$OUT/scale-10000-single.json")" "$(rate "$OUT/scale-$N-single.json")"
	printf '%-48s %14s %14s\n' "append batches of 100 (events/s)" "$(rate "$OUT/scale-10000-batch.json")" "$(rate "$OUT/scale-$N-batch.json")"
	printf '%-48s %14s %14s\n' "startup to listening (ms)" "$(cat "$OUT/scale-10000-startup.txt")" "$(cat "$OUT/scale-$N-startup.txt")"
	for size in 10000 "$N"; do
		printf '%-48s %s\n' "server memory at $size" "$(cat "$OUT/scale-$size-rss.txt")"
		read -r heap total idx events <"$OUT/scale-$size-size.txt"
		printf '%-48s %s\n' "bytes per event at $size" "heap $((heap / events)), indexes $((idx / events)), total $((total / events)) (TOAST included)"
		printf '%-48s %s\n' "WAL per event at $size" "single $(cat "$OUT/scale-$size-single-wal.txt") B, batch $(cat "$OUT/scale-$size-batch-wal.txt") B"
	done
	echo "EXPLAIN plans at $N events: $OUT/scale-explain.txt"
} | tee "$OUT/scale.txt"
