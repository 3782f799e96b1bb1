#!/usr/bin/env bash
# The performance suite behind `make bench` (see docs/PERFORMANCE.md).
#
# 1. Raw PostgreSQL ceiling: bench/pgbench.sh (single-row INSERT transactions
#    at 1/16/64 clients, 100-row INSERTs at 16 clients) in the scratch
#    database fossil_bench_raw, and the appender's lone-event statement
#    (bench/fossil_lone.sql, 1 client) in fossil_bench_raw_sql. Each raw
#    shape runs just before the Fossil shape it is compared with (raw 1
#    client and the lone statement before lone, raw 16 and 64 clients
#    before single, raw 100-row batches before batch), so that a ratio
#    compares two measurements taken within a minute of each other: on a
#    shared machine raw PostgreSQL itself has moved 2x within half an hour
#    (docs/PERFORMANCE.md, "Reproduce" and "Latest").
# 2. Fossil: bin/fossil server on the scratch database fossil_bench of the
#    same PostgreSQL server, on 127.0.0.1 with a random port, and
#    `fossil bench` for each target shape:
#      lone      single events, 1 client (one append at a time), 1000 streams
#      single    single events, 64 clients, 1000 streams
#      batch     batches of 100 events, 16 clients, 1000 streams
#      hot       single events, 64 clients, one hot stream
#      delivery  100 live subscribers while 64 writers ingest 5,000 events/s
#      replay    one subscriber replays the log from 0 over {+all}
#      single16  single events, 16 clients, 1000 streams (POSTs beside stream16)
#      stream1   single events over gRPC CollectStream: one connection, 256
#                requests pipelined, 1000 streams
#      stream16  the same on 16 connections, 64 requests pipelined on each
#      replay-grpc  the replay over gRPC Subscribe instead of SSE
#      idle      10,000 idle SSE subscribers; server VmRSS from /proc
#    Each shape starts after a CHECKPOINT, as each raw shape does.
#    While each shape runs, a CPU profile (heap for idle) is taken from the
#    server's --pprof-addr listener into $BENCH_OUT/<shape>.pprof.
# 3. One table with Fossil ÷ raw ratios and each target met or missed.
#
# PostgreSQL: $PG_ADMIN_URL if set (a maintenance database; the role needs
# CREATEDB), else the server at 127.0.0.1:5432 as user postgres with trust
# authentication if it answers, else a throwaway cluster started here from
# the PostgreSQL binaries installed on this machine.
#
# Environment: BENCH_DB (fossil_bench) names the scratch databases (BENCH_DB
# and BENCH_DB_raw), so that two runs on one server need not share them;
# BENCH_SECONDS (20) per Fossil shape, PGBENCH_SECONDS (15) per
# raw shape, BENCH_OUT (bin/bench) for JSON results, logs and profiles,
# BENCH_PROFILE=0 to skip profiles, IDLE_SUBSCRIBERS (10000), FOSSIL_DB_PARAMS
# (query parameters added to Fossil's DATABASE_URL, such as
# plan_cache_mode=force_custom_plan, which pgx sends as run-time settings).
# Every process this script starts is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

S=${BENCH_SECONDS:-20}
OUT=${BENCH_OUT:-bin/bench}
PROFILE=${BENCH_PROFILE:-1}
IDLE=${IDLE_SUBSCRIBERS:-10000}
export PGBENCH_SECONDS=${PGBENCH_SECONDS:-15}
DB=${BENCH_DB:-fossil_bench}
export RAW_DB=${DB}_raw
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

say() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'bench/run.sh: %s\n' "$*" >&2
	exit 1
}

for tool in jq psql pgbench curl awk; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install jq postgresql-client postgresql-contrib curl)"
done

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.pprof "$OUT"/*.txt "$OUT"/*.log "$OUT"/*.metrics

SERVER_PID=
PG_DIR=
PG_RUN=
PG_BIN=
cleanup() {
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [ -n "$PG_DIR" ]; then
		$PG_RUN "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
		rm -rf "$PG_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The URL of database $2 on the server of URL $1.
db_url() {
	local base=${1%%\?*} query=
	[ "$base" != "$1" ] && query="?${1#*\?}"
	printf '%s/%s%s' "${base%/*}" "$2" "$query"
}

# --- PostgreSQL ---------------------------------------------------------
start_throwaway_cluster() {
	local initdb
	initdb=$(command -v initdb || true)
	if [ -z "$initdb" ]; then
		initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)
	fi
	[ -n "$initdb" ] || die "no PostgreSQL at 127.0.0.1:5432 and no initdb to start one: install postgresql or set PG_ADMIN_URL"
	PG_BIN=$(dirname "$initdb")
	PG_DIR=$(mktemp -d /tmp/fossil-bench-pg.XXXXXX)
	chmod 755 "$PG_DIR"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres "$PG_DIR"
		PG_RUN="runuser -u postgres --"
	fi
	local port
	port=$((40000 + RANDOM % 20000))
	say "starting a throwaway PostgreSQL on 127.0.0.1:$port ($PG_DIR)"
	$PG_RUN "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
	$PG_RUN "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
		-o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_DIR -c max_connections=200" start >/dev/null
	ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

if [ -n "${PG_ADMIN_URL:-}" ]; then
	ADMIN_URL=$PG_ADMIN_URL
elif psql -X -q -c 'SELECT 1' "postgres://postgres@127.0.0.1:5432/postgres?connect_timeout=3" >/dev/null 2>&1; then
	ADMIN_URL="postgres://postgres@127.0.0.1:5432/postgres"
else
	start_throwaway_cluster
fi
PG_VERSION=$(psql -X -At -c 'SHOW server_version' "$ADMIN_URL")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "PostgreSQL $PG_VERSION at ${ADMIN_URL%%\?*}"

# --- 1. raw ceiling -------------------------------------------------------
# rawshapes SHAPES…: the raw shapes compared with the next Fossil shape
# (bench/pgbench.sh's RAW_SHAPES), appended to $OUT/raw.txt.
: >"$OUT/raw.txt"
rawshapes() {
	say "raw PostgreSQL ceiling (pgbench, ${PGBENCH_SECONDS}s per shape): $*"
	RAW_SHAPES="$*" bench/pgbench.sh "$ADMIN_URL" | tee -a "$OUT/raw.txt" | grep -v '^raw shape=' >&2
}
raw() { # raw SHAPE CLIENTS -> rows/s
	sed -n "s/^raw shape=$1 clients=$2 .*rows_per_sec=\([0-9.]*\).*$/\1/p" "$OUT/raw.txt"
}
raw_lat() { # raw_lat SHAPE CLIENTS p50|p99 -> ms
	sed -n "s/^raw shape=$1 clients=$2 .* $3_ms=\([0-9.-]*\).*$/\1/p" "$OUT/raw.txt"
}

# --- 2. Fossil ------------------------------------------------------------
[ -x bin/fossil ] || go build -o bin/fossil .
FOSSIL_DB_URL=$(db_url "$ADMIN_URL" "$DB")
if [ -n "${FOSSIL_DB_PARAMS:-}" ]; then # e.g. plan_cache_mode=force_custom_plan
	case $FOSSIL_DB_URL in *\?*) FOSSIL_DB_URL="$FOSSIL_DB_URL&$FOSSIL_DB_PARAMS" ;; *) FOSSIL_DB_URL="$FOSSIL_DB_URL?$FOSSIL_DB_PARAMS" ;; esac
	say "Fossil's database URL carries $FOSSIL_DB_PARAMS"
fi
psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null

# 10,000 idle streams need as many descriptors in the server and in the bench.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bin/fossil server --addr 127.0.0.1:0 --pprof-addr 127.0.0.1:0 --database-url "$FOSSIL_DB_URL" \
	--max-sse-clients $((IDLE + 1000)) >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
	grep -q 'msg="fossil is listening"' "$OUT/server.log" && break
	kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -n 5 "$OUT/server.log")"
	sleep 0.1
done
ADDR=$(sed -n 's/.*msg="fossil is listening" addr=\([^ ]*\).*/\1/p' "$OUT/server.log")
PPROF=$(sed -n 's/.*msg="pprof is listening" addr=\([^ ]*\).*/\1/p' "$OUT/server.log")
[ -n "$ADDR" ] || die "the server did not start: $(tail -n 5 "$OUT/server.log")"
URL="http://$ADDR"
say "Fossil $(bin/fossil version) at $URL (pid $SERVER_PID, pprof $PPROF)"

# shape NAME PROFILE_DELAY PROFILE_SECONDS PROFILE_KIND -- BENCH FLAGS…
shape() {
	local name=$1 delay=$2 secs=$3 kind=$4 prof=
	shift 5
	say "fossil bench $name: $*"
	# As each raw shape (bench/pgbench.sh), each Fossil shape starts after
	# a CHECKPOINT: none of them pays for the writes of the one before
	# (a checkpoint and the full-page images that follow it).
	psql -q -X "$ADMIN_URL" -c CHECKPOINT >/dev/null
	if [ "$PROFILE" = 1 ] && [ -n "$PPROF" ]; then
		if [ "$kind" = heap ]; then
			# Once every idle stream is open (or after $delay seconds).
			(
				for _ in $(seq $((delay * 10))); do
					n=$(curl -s "$URL/metrics" | awk '/^fossil_sse_subscribers / { print int($2) }')
					[ "${n:-0}" -ge "$IDLE" ] && break
					sleep 0.1
				done
				sleep 1
				curl -s -o "$OUT/$name.pprof" "http://$PPROF/debug/pprof/heap"
			) &
		else
			(sleep "$delay" && curl -s -o "$OUT/$name.pprof" "http://$PPROF/debug/pprof/profile?seconds=$secs") &
		fi
		prof=$!
	fi
	curl -s "$URL/metrics" >"$OUT/$name.before.metrics"
	bin/fossil bench --url "$URL" --json "$@" >"$OUT/$name.json"
	curl -s "$URL/metrics" >"$OUT/$name.after.metrics"
	[ -z "$prof" ] || wait "$prof" || true
}

half=$((S / 2))
quarter=$((S / 4))
rawshapes single:1 lonesql:1
shape lone "$quarter" "$half" cpu -- --clients 1 --streams 1000 --duration "${S}s"
rawshapes single:16 single:64
shape single "$quarter" "$half" cpu -- --clients 64 --streams 1000 --duration "${S}s"
rawshapes batch100:16
shape batch "$quarter" "$half" cpu -- --clients 16 --batch 100 --streams 1000 --duration "${S}s"
shape hot "$quarter" "$half" cpu -- --clients 64 --streams 1 --duration "${S}s"
shape delivery "$quarter" "$half" cpu -- --clients 64 --streams 1000 --rate 5000 --subscribers 100 --duration "${S}s"
shape replay 1 5 cpu -- --clients 0 --replay --replay-limit 2000000
shape replay-grpc 1 5 cpu -- --clients 0 --replay --replay-protocol grpc --replay-limit 2000000
shape single16 "$quarter" "$half" cpu -- --clients 16 --streams 1000 --duration "${S}s"
shape stream1 "$quarter" "$half" cpu -- --protocol grpc --clients 1 --pipeline 256 --streams 1000 --duration "${S}s"
shape stream16 "$quarter" "$half" cpu -- --protocol grpc --clients 16 --pipeline 64 --streams 1000 --duration "${S}s"
shape idle "$S" 0 heap -- --clients 0 --idle-subscribers "$IDLE" --duration "${S}s" --rss-pid "$SERVER_PID"

# --- 3. the table ---------------------------------------------------------
j() { jq -r "$2" "$OUT/$1.json"; }

# Server-side commit→write delivery lag quantile $2 from the
# fossil_delivery_lag_seconds histogram, as the delta between two scrapes
# of shape $1: the upper bound of the bucket holding the quantile, in ms.
server_lag() {
	awk -v q="$2" '
		FNR == 1 { file++ }
		/^fossil_delivery_lag_seconds_bucket/ {
			match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
			if (file == 1) before[le] = $2; else { after[le] = $2; order[++n] = le }
		}
		END {
			total = after["+Inf"] - before["+Inf"]
			if (total <= 0) { print "-"; exit }
			for (i = 1; i <= n; i++) {
				le = order[i]
				if (after[le] - before[le] >= q * total) {
					if (le == "+Inf") print ">15000"; else printf "%g\n", le * 1000
					exit
				}
			}
		}' "$OUT/$1.before.metrics" "$OUT/$1.after.metrics"
}

# groups, events per group, ms per group and server CPU (% of one core)
# during shape $1.
server_view() {
	local secs
	secs=$(j "$1" 'if .replay then .replay.seconds else .seconds end')
	awk -v secs="$secs" '
		FNR == 1 { file++ }
		/^(fossil_append_group_events_(sum|count)|fossil_append_group_duration_seconds_sum|process_cpu_seconds_total) / {
			v[$1] += (file == 1 ? -$2 : $2)
		}
		END {
			n = v["fossil_append_group_events_count"]
			printf "%d %.1f %.1f %.0f\n", n,
				n ? v["fossil_append_group_events_sum"] / n : 0,
				n ? 1000 * v["fossil_append_group_duration_seconds_sum"] / n : 0,
				(secs > 0 ? 100 * v["process_cpu_seconds_total"] / secs : 0)
		}' "$OUT/$1.before.metrics" "$OUT/$1.after.metrics"
}

raw1=$(raw single 1)
raw1_p50=$(raw_lat single 1 p50)
raw1_p99=$(raw_lat single 1 p99)
raw16=$(raw single 16)
raw64=$(raw single 64)
rawb=$(raw batch100 16)
lone=$(j lone .events_per_second)
single=$(j single .events_per_second)
batch=$(j batch .events_per_second)
hot=$(j hot .events_per_second)
delivery_rate=$(j delivery .events_per_second)
replay=$(j replay '.replay.events_per_second // 0')
replay_grpc=$(j replay-grpc '.replay.events_per_second // 0')
single16=$(j single16 .events_per_second)
stream1=$(j stream1 .events_per_second)
stream16=$(j stream16 .events_per_second)
idle_open=$(j idle '.idle.open')
idle_rss=$(j idle '[.idle.server_rss_open_bytes // 0, .idle.server_rss_end_bytes // 0] | max')
idle_base=$(j idle '.idle.server_rss_before_bytes // 0')
lag50=$(server_lag delivery 0.5)
lag99=$(server_lag delivery 0.99)

calc() { awk "BEGIN { $1 }"; }
ratio() { calc "if ($2 > 0) printf \"%.2f\", $1 / $2; else print \"-\""; }
yesno() { calc "if ($1) print \"met\"; else print \"MISSED\""; }
num() { calc "printf \"%.0f\", $1"; }

errors_of() { j "$1" '[.errors[]?] | add // 0'; }
total_errors=0
for s in lone single batch hot delivery replay idle replay-grpc single16 stream1 stream16; do
	total_errors=$((total_errors + $(errors_of "$s")))
done

s99=$(j single .append_latency.p99_ms)
l50=$(j lone .append_latency.p50_ms)
d50=$(j delivery .delivery_latency.p50_ms)
d99=$(j delivery .delivery_latency.p99_ms)

{
	echo
	echo "make bench — $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, PostgreSQL $PG_VERSION, Fossil $(bin/fossil version | cut -d' ' -f2)"
	echo
	printf '%-34s %12s %14s %9s %26s  %s\n' "shape" "Fossil ev/s" "raw rows/s" "ratio" "append p50/p95/p99 ms" "target"
	printf '%-34s %12s %14s %9s %26s  %s\n' "----------------------------------" "------------" "--------------" "---------" "--------------------------" "------"
	row() { # name fossil raw ratio latency-json-file target
		local lat
		lat=$(j "$5" '"\(.append_latency.p50_ms)/\(.append_latency.p95_ms)/\(.append_latency.p99_ms)"')
		printf '%-34s %12s %14s %9s %26s  %s\n' "$1" "$(num "$2")" "$3" "$4" "$lat" "$6"
	}
	row "single events, 1 client" "$lone" "$(num "$raw1") (1c)" "$(ratio "$lone" "$raw1")" lone \
		"≥0.8× raw(1c), p50≤0.5ms: $(yesno "$lone >= 0.8 * $raw1 && $l50 <= 0.5")"
	row "single events, 64 clients, 1000 st" "$single" "$(num "$raw16") (16c)" "$(ratio "$single" "$raw16")" single \
		"≥1.3× raw(16c), ≥12,000/s, p99<50ms: $(yesno "$single >= 1.3 * $raw16 && $single >= 12000 && $s99 < 50")"
	row "batches of 100, 16 clients" "$batch" "$(num "$rawb") (16c)" "$(ratio "$batch" "$rawb")" batch \
		"≥0.70× raw 100-row: $(yesno "$batch >= 0.7 * $rawb")"
	row "one hot stream, 64 writers" "$hot" "single: $(num "$single")" "$(ratio "$hot" "$single")" hot \
		"≥0.80× many streams: $(yesno "$hot >= 0.8 * $single")"
	# The target is commit → delivery: the server's commit→write histogram
	# (upper bucket bounds, so conservative), while the ingest rate holds
	# at 5,000/s (95 %). send→receive below also counts the append itself.
	delivery_met=MISSED
	case "$lag50$lag99" in
	*[!0-9.]* | "") ;;
	*) delivery_met=$(yesno "$delivery_rate >= 4750 && $lag50 < 5 && $lag99 < 50") ;;
	esac
	row "100 subscribers @ 5,000 ev/s" "$delivery_rate" "-" "-" delivery \
		"commit→write p50<5ms, p99<50ms at ≥4,750 ev/s: $delivery_met"
	row "single events, 16 clients, 1000 st" "$single16" "$(num "$raw16") (16c)" "$(ratio "$single16" "$raw16")" single16 "(the POSTs beside stream16)"
	row "gRPC CollectStream, 1 connection" "$stream1" "$(num "$raw1") (1c)" "$(ratio "$stream1" "$raw1")" stream1 \
		"≥2× 1 client POSTs ($(num "$lone")), ≥ raw(1c): $(yesno "$stream1 >= 2 * $lone && $stream1 >= $raw1")"
	row "gRPC CollectStream, 16 connections" "$stream16" "POSTs: $(num "$single16")" "$(ratio "$stream16" "$single16")" stream16 \
		"≥2× 16 clients POSTs: $(yesno "$stream16 >= 2 * $single16")"
	echo
	printf '%-34s %s\n' "delivery latency (send→receive)" "p50 ${d50} ms, p95 $(j delivery .delivery_latency.p95_ms) ms, p99 ${d99} ms, $(j delivery .delivered) of $(j delivery .delivery_expected) delivered"
	printf '%-34s %s\n' "server commit→write (/metrics)" "p50 ≤ ${lag50} ms, p99 ≤ ${lag99} ms (upper bounds of histogram buckets)"
	printf '%-34s %s\n' "catch-up replay, 1 subscriber" "$(num "$replay") events/s over $(j replay '.replay.events // 0') events — ≥100,000/s: $(yesno "$replay >= 100000")"
	printf '%-34s %s\n' "catch-up replay, gRPC Subscribe" "$(num "$replay_grpc") events/s over $(j replay-grpc '.replay.events // 0') events — ≥ SSE ($(num "$replay")/s): $(yesno "$replay_grpc >= $replay")"
	printf '%-34s %s\n' "$IDLE idle SSE subscribers" "$idle_open open, server RSS $(calc "printf \"%.0f\", $idle_rss / 1048576") MiB (idle server: $(calc "printf \"%.0f\", $idle_base / 1048576") MiB) — <1 GiB: $(yesno "$idle_open >= $IDLE && $idle_rss > 0 && $idle_rss < 1073741824")"
	printf '%-34s %s\n' "raw 1-client INSERT tx latency" "p50 ${raw1_p50} ms, p99 ${raw1_p99} ms (pgbench -c 1)"
	printf '%-34s %s\n' "Fossil's lone statement, pgbench" "$(num "$(raw lonesql 1)")/s, p50 $(raw_lat lonesql 1 p50) ms, p99 $(raw_lat lonesql 1 p99) ms (bench/fossil_lone.sql -c 1: PostgreSQL's share of the lone shape)"
	printf '%-34s %s\n' "raw single-row INSERT tx" "1 client $(num "$raw1")/s, 16 clients $(num "$raw16")/s, 64 clients $(num "$raw64")/s"
	printf '%-34s %s\n' "errors during the Fossil runs" "$total_errors"
	echo
	echo
	echo "server view of each shape (deltas of /metrics):"
	printf '  %-9s %8s %12s %12s %16s\n' shape groups "events/group" "ms/group" "server CPU %"
	for s in lone single batch hot delivery replay replay-grpc single16 stream1 stream16; do
		printf '  %-9s %8s %12s %12s %16s\n' "$s" $(server_view "$s")
	done
	echo "load average (1/5/15 min) at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "JSON results, server log and profiles: $OUT/"
} | tee "$OUT/summary.txt"

# Machine-readable lines.
{
	grep '^raw shape=' "$OUT/raw.txt"
	for s in lone single batch hot delivery single16 stream1 stream16; do
		echo "fossil shape=$s events_per_sec=$(j $s .events_per_second) p50_ms=$(j $s .append_latency.p50_ms) p95_ms=$(j $s .append_latency.p95_ms) p99_ms=$(j $s .append_latency.p99_ms) errors=$(errors_of $s)"
	done
	echo "fossil shape=delivery delivery_p50_ms=$d50 delivery_p99_ms=$d99 server_lag_p50_ms=$lag50 server_lag_p99_ms=$lag99"
	echo "fossil shape=replay events_per_sec=$replay"
	echo "fossil shape=replay-grpc events_per_sec=$replay_grpc"
	echo "fossil shape=idle subscribers=$idle_open rss_bytes=$idle_rss"
} | tee -a "$OUT/summary.txt"

# --- 4. subscriptions -----------------------------------------------------
# Delivery to a local webhook answering 204 (20,000 events over 1,000
# streams), commit→delivery at 1,000 events/s, and to NATS JetStream on
# 127.0.0.1:4222 (20,000 events). Go benchmarks in package subscription, on
# databases cloned on the same PostgreSQL server.
say "subscriptions: webhook, latency at 1,000 events/s, NATS"
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
	die "subscriptions: NATS JetStream must listen on 127.0.0.1:4222 (nats-server -js)"
fi
FOSSIL_TEST_DATABASE_URL="$ADMIN_URL" go test -run=NONE -bench=BenchmarkSubscription -benchtime=1x -timeout 15m ./subscription/ 2>&1 |
	grep -E '^(Benchmark|ok|FAIL)' | tee "$OUT/subscriptions.txt"
awk '/^BenchmarkSubscriptionWebhook/ { printf "fossil shape=subscription-webhook events_per_sec=%.0f target=5000\n", $3 }
     /^BenchmarkSubscriptionLatency/ { printf "fossil shape=subscription-latency p50_ms=%s p99_ms=%s target_p99_ms=100\n", $3, $5 }
     /^BenchmarkSubscriptionNATS/    { printf "fossil shape=subscription-nats events_per_sec=%.0f target=20000\n", $3 }' \
	"$OUT/subscriptions.txt" | tee -a "$OUT/summary.txt"
