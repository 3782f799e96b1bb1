#!/usr/bin/env bash
# Raw PostgreSQL ceiling for Fossil's append shapes.
#
# Usage: bench/pgbench.sh [ADMIN_URL]
#
# ADMIN_URL (default $PG_ADMIN_URL, else postgres://postgres@127.0.0.1:5432/postgres)
# names a maintenance database on the server to measure; the role needs
# CREATEDB. The script (re)creates the scratch database fossil_bench_raw (or
# $RAW_DB), creates Fossil's tables in it from migrations/0001_events.up.sql
# and the indexes of migrations/0006_selective_reads.up.sql (so the row shape
# and indexes are exactly Fossil's), and runs pgbench with the custom
# scripts beside this file:
#
#   single   raw_single.sql     one-row INSERT transactions at 1, 16 and 64 clients
#   lonesql  fossil_lone.sql    the statement Fossil's appender sends for a lone
#                               single event, at 1 client, in $RAW_DB_sql (all of
#                               Fossil's migrations), with the appender's plan
#                               settings: PostgreSQL's floor for Fossil's lone shape
#   batch100 raw_batch100.sql   100-row multi-row INSERTs at 16 clients
#
# Each shape starts from an empty table after a CHECKPOINT. pgbench logs
# every transaction's latency (-l), from which the median and the 99th
# percentile are taken. Output: one human-readable line per shape, then
# machine-readable lines:
#
#   raw shape=single clients=16 rows_per_tx=1 seconds=15 tps=1234.5 rows_per_sec=1234.5 p50_ms=1.234 p99_ms=5.678
#
# Environment: PGBENCH_SECONDS (default 15) per shape; DATA_BYTES (default
# 500) of event data; RAW_SHAPES to run a subset, e.g. "single:16 batch100:16".
set -euo pipefail
cd "$(dirname "$0")/.."

ADMIN_URL=${1:-${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
SECS=${PGBENCH_SECONDS:-15}
DATA_BYTES=${DATA_BYTES:-500}
SHAPES=${RAW_SHAPES:-"single:1 lonesql:1 single:16 single:64 batch100:16"}
DB=${RAW_DB:-fossil_bench_raw}

for tool in psql pgbench; do
	if ! command -v "$tool" >/dev/null; then
		echo "pgbench.sh: $tool not found: install the PostgreSQL client programs (apt-get install postgresql-client postgresql-contrib)" >&2
		exit 1
	fi
done

# The URL of database $2 on the server of URL $1.
db_url() {
	local base=${1%%\?*} query=
	[ "$base" != "$1" ] && query="?${1#*\?}"
	printf '%s/%s%s' "${base%/*}" "$2" "$query"
}
RAW_URL=$(db_url "$ADMIN_URL" "$DB")
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

psql -q -X -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
psql -q -X -v ON_ERROR_STOP=1 "$RAW_URL" -f migrations/0001_events.up.sql -f migrations/0006_selective_reads.up.sql -c "CREATE SEQUENCE raw_number" >/dev/null
# The same server, every migration: the tables the appender writes.
SQL_URL=$(db_url "$ADMIN_URL" "${DB}_sql")
psql -q -X -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS ${DB}_sql WITH (FORCE)" -c "CREATE DATABASE ${DB}_sql" >/dev/null
for f in $(ls migrations/*.up.sql | sort); do
	psql -q -X -v ON_ERROR_STOP=1 "$SQL_URL" -f "$f" >/dev/null
done

# The JSON document after its id: the attributes and ~DATA_BYTES of data,
# the same shape as the events fossil bench posts.
pad=$(head -c $((DATA_BYTES > 56 ? DATA_BYTES - 56 : 0)) /dev/zero | tr '\0' 'a')
rest="\"source\":\"/pgbench\",\"type\":\"bench.event\",\"datacontenttype\":\"application/json\",\"data\":{\"sent_ns\":1763823456789012345,\"writer\":1,\"pad\":\"$pad\"}}"

LOGS=$(mktemp -d /tmp/fossil-pgbench.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT

# The p-th percentile (0 < p < 1) of the latencies in pgbench's transaction
# logs under $LOGS (third field, microseconds), in milliseconds.
percentile() {
	cat "$LOGS"/tx.* | awk '{ print $3 }' | sort -n | awk -v p="$1" '
		{ v[NR] = $1 }
		END { if (NR == 0) { print "-"; exit } i = int(p * NR + 0.999999); if (i < 1) i = 1; printf "%.3f\n", v[i] / 1000 }'
}

lines=()
for shape in $SHAPES; do
	name=${shape%%:*}
	clients=${shape##*:}
	url=$RAW_URL reset="TRUNCATE fossil_events" opts=
	case $name in
	single) script=bench/raw_single.sql rows=1 ;;
	lonesql)
		script=bench/fossil_lone.sql rows=1 url=$SQL_URL opts="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off"
		reset="TRUNCATE fossil_events, fossil_streams CASCADE; UPDATE fossil_head SET last_number = 0, tree_size = 0"
		[ "$clients" = 1 ] || { echo "pgbench.sh: lonesql runs with 1 client only" >&2; exit 2; }
		;;
	batch100) script=bench/raw_batch100.sql rows=100 ;;
	*) echo "pgbench.sh: unknown shape $name" >&2; exit 2 ;;
	esac
	psql -q -X "$url" -c "$reset" -c "CHECKPOINT" >/dev/null
	threads=$((clients < 2 ? clients : 2))
	rm -f "$LOGS"/tx.*
	out=$(cd "$LOGS" && PGOPTIONS="$PGOPTIONS $opts" pgbench -n -M prepared -c "$clients" -j "$threads" -T "$SECS" -l --log-prefix=tx -f "$OLDPWD/$script" -D "rest=$rest" -D n=0 "$url" 2>&1) || {
		echo "$out" >&2
		exit 1
	}
	tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)
	if [ -z "$tps" ]; then
		echo "$out" >&2
		echo "pgbench.sh: no tps in pgbench's output" >&2
		exit 1
	fi
	rps=$(awk -v t="$tps" -v r="$rows" 'BEGIN { printf "%.1f", t * r }')
	lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' | head -n1)
	p50=$(percentile 0.5)
	p99=$(percentile 0.99)
	printf 'raw %-8s %3d clients  %10s rows/s  (%s tx/s, %s ms per tx, p50 %s ms, p99 %s ms)\n' "$name" "$clients" "$rps" "$tps" "${lat:-?}" "$p50" "$p99"
	lines+=("raw shape=$name clients=$clients rows_per_tx=$rows seconds=$SECS tps=$tps rows_per_sec=$rps p50_ms=$p50 p99_ms=$p99")
done
printf '%s\n' "${lines[@]}"
