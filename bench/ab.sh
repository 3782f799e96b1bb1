#!/usr/bin/env bash
# A/B: the append shapes of `make bench` against two builds of Fossil in one
# run, alternating, so that both see the same machine (`make bench-ab`).
#
#   bench/ab.sh REV_A REV_B     e.g. bench/ab.sh f0894b8^ f0894b8
#
# Each revision is built from a `git worktree` into $AB_OUT/<a|b>/fossil.
# For each of AB_ROUNDS rounds (2) and each build in turn, a server runs on
# a fresh database of the PostgreSQL at $PG_ADMIN_URL (default the server on
# 127.0.0.1:5432 as postgres) and the current build's `fossil bench` drives
# it, AB_SECONDS (8) per shape:
#   lone    single events, 1 client
#   single  single events, 64 clients
#   batch   batches of 100, 16 clients
# It prints events/s, p50 and the server's CPU time per event (utime +
# stime from /proc while the shape runs, ÷ events) per round, and B ÷ A of
# the sums; CPU per event is the steadier figure on a busy machine.
# AB_SHAPES: the shapes to run, a subset of "lone single batch" (all).
# AB_ENV_A / AB_ENV_B: extra environment (space-separated NAME=value) for
# the servers of A / B, so that one revision can be compared with itself
# under two settings.
# AB_TRACING=1: B traces (tracing off against on, `make bench-tracing`):
# bench/otlpsink, started here on a free loopback port, takes every OTLP/HTTP
# export and drops it; B's servers get OTEL_EXPORTER_OTLP_ENDPOINT pointing
# at it, OTEL_TRACES_SAMPLER=always_on (every span sampled) and
# OTEL_BSP_MAX_QUEUE_SIZE=$AB_BSP_QUEUE (default 1000000, so that the batch
# processor exports every span instead of dropping what overflows its
# default queue of 2048). The sink's span count and CPU time are printed
# at the end.
#   AB_TRACING=1 bench/ab.sh HEAD HEAD
# AB_TAGS_A / AB_TAGS_B: Go build tags for A / B, e.g. the cost of the
# Merkle tree: the same revision built without the tree work (the
# benchmark-only tag benchnotree) against the product build:
#   AB_TAGS_A=benchnotree bench/ab.sh HEAD HEAD      (make bench-tree)
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || { echo "usage: bench/ab.sh REV_A REV_B" >&2; exit 2; }
A=$1 B=$2
S=${AB_SECONDS:-8}
ROUNDS=${AB_ROUNDS:-2}
OUT=${AB_OUT:-bin/ab}
ADMIN=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

for tool in jq psql go git curl; do
	command -v "$tool" >/dev/null || { echo "bench/ab.sh: $tool not found" >&2; exit 1; }
done
psql -X -q -c 'SELECT 1' "$ADMIN" >/dev/null || { echo "bench/ab.sh: no PostgreSQL at $ADMIN" >&2; exit 1; }

mkdir -p "$OUT"
go build -o "$OUT/driver" . # the load generator: the current tree's
SINK=
if [ "${AB_TRACING:-0}" = 1 ]; then
	go build -o "$OUT/otlpsink" ./bench/otlpsink
	"$OUT/otlpsink" >"$OUT/otlpsink.url" 2>"$OUT/otlpsink.log" &
	SINK=$!
	for _ in $(seq 1 100); do
		[ -s "$OUT/otlpsink.url" ] && break
		sleep 0.1
	done
	SINK_URL=$(head -n 1 "$OUT/otlpsink.url")
	[ -n "$SINK_URL" ] || { echo "bench/ab.sh: bench/otlpsink did not start: $(cat "$OUT/otlpsink.log")" >&2; exit 1; }
	AB_ENV_B="${AB_ENV_B:-} OTEL_EXPORTER_OTLP_ENDPOINT=$SINK_URL OTEL_TRACES_SAMPLER=always_on OTEL_BSP_MAX_QUEUE_SIZE=${AB_BSP_QUEUE:-1000000}"
fi
build() { # rev dir tags
	local wt out
	out=$(cd "$2" && pwd)
	wt=$(mktemp -d)
	git worktree add -q --detach "$wt" "$1"
	(cd "$wt" && go build -tags "$3" -o "$out/fossil" .)
	git worktree remove --force "$wt"
}
mkdir -p "$OUT/a" "$OUT/b"
build "$A" "$OUT/a" "${AB_TAGS_A:-}"
build "$B" "$OUT/b" "${AB_TAGS_B:-}"

PID=
DB=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
	[ -n "$DB" ] && psql -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" "$ADMIN" >/dev/null 2>&1 || true
	if [ -n "$SINK" ]; then
		kill "$SINK" 2>/dev/null && wait "$SINK" 2>/dev/null || true
		cat "$OUT/otlpsink.log"
	fi
}
trap cleanup EXIT

base=${ADMIN%/*}
TCK=$(getconf CLK_TCK)
cputicks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of a process
run_shape() { # which shape args...
	local which=$1 shape=$2
	shift 2
	DB=fossil_ab_$$_$which
	psql -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" "$ADMIN" >/dev/null
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	local extra
	if [ "$which" = a ]; then extra=${AB_ENV_A:-}; else extra=${AB_ENV_B:-}; fi
	# shellcheck disable=SC2086 # extra is a list of NAME=value words
	env $extra DATABASE_URL="$base/$DB" FOSSIL_LOG_LEVEL=warn "$OUT/$which/fossil" server --addr "127.0.0.1:$port" >"$OUT/$which.log" 2>&1 &
	PID=$!
	local ready=
	for _ in $(seq 1 1200); do
		if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.1
	done
	[ -n "$ready" ] || { echo "bench/ab.sh: build $which not ready after 120 s; its log:" >&2; cat "$OUT/$which.log" >&2; exit 1; }
	local t0 t1
	t0=$(cputicks "$PID")
	"$OUT/driver" bench --url "http://127.0.0.1:$port" --json --quiet --duration "${S}s" "$@" >"$OUT/$which-$shape.json" 2>"$OUT/$which-$shape.err"
	t1=$(cputicks "$PID")
	kill "$PID"
	wait "$PID" 2>/dev/null || true
	PID=
	psql -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" "$ADMIN" >/dev/null
	DB=
	jq -r --argjson ticks "$((t1 - t0))" --argjson tck "$TCK" \
		'[.events_per_second, .append_latency.p50_ms, (if .events > 0 then $ticks / $tck * 1e6 / .events else 0 end)] | @tsv' "$OUT/$which-$shape.json"
}

declare -A sum cpu
printf '%-7s %-5s %-3s %12s %8s %10s\n' shape round rev events/s p50-ms cpu-µs/ev
for r in $(seq 1 "$ROUNDS"); do
	for shape in ${AB_SHAPES:-lone single batch}; do
		case $shape in
		lone) args=(--clients 1 --streams 1000) ;;
		single) args=(--clients 64 --streams 1000) ;;
		batch) args=(--clients 16 --batch 100 --streams 1000) ;;
		esac
		for which in a b; do
			read -r eps p50 us < <(run_shape "$which" "$shape" "${args[@]}")
			printf '%-7s %-5s %-3s %12.0f %8.2f %10.1f\n' "$shape" "$r" "$which" "$eps" "$p50" "$us"
			sum[$shape$which]=$(awk -v x="${sum[$shape$which]:-0}" -v y="$eps" 'BEGIN { print x + y }')
			cpu[$shape$which]=$(awk -v x="${cpu[$shape$which]:-0}" -v y="$us" 'BEGIN { print x + y }')
		done
	done
done
echo "A = $A ($(git rev-parse --short "$A")) ${AB_TAGS_A:+-tags $AB_TAGS_A }${AB_ENV_A:-}, B = $B ($(git rev-parse --short "$B")) ${AB_TAGS_B:+-tags $AB_TAGS_B }${AB_ENV_B:-}; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for shape in ${AB_SHAPES:-lone single batch}; do
	awk -v s="$shape" -v a="${sum[${shape}a]}" -v b="${sum[${shape}b]}" -v ca="${cpu[${shape}a]}" -v cb="${cpu[${shape}b]}" \
		'BEGIN { printf "%-7s B/A = %.2fx events/s, %.2fx CPU per event (mean %.1f vs %.1f µs)\n", s, b / a, cb / ca, ca / '"$ROUNDS"', cb / '"$ROUNDS"' }'
done
