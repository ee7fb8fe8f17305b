#!/usr/bin/env bash
# Throughput, latency and memory of metrics-app, against a minimal hyper baseline measured in
# the same run. Prints figures; asserts nothing (targets are in bench/README.md).
#
#   bash bench/run.sh            # full run (about 2 minutes)
#   DURATION=5s bash bench/run.sh
#
# Layout on a 2-core machine: the server under test is pinned to CPU 0; wrk (and Redis, for
# the Redis store) to CPU 1. wrk: 1 thread, 32 connections, keep-alive.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET_REQUESTS=${TARGET_REQUESTS:-1000000}

for tool in wrk taskset redis-server curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (Debian packages wrk, util-linux, redis-server, curl)" >&2; exit 2; }
done

cargo build --release --locked -p metrics-app -p bench-baseline >&2
BIN=${CARGO_TARGET_DIR:-target}/release

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has cd-ed to the repository root

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Runs wrk against $1 for $2; prints "req_per_s p50_ms p99_ms requests".
run_wrk() {
  local url=$1 duration=$2 out
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$duration" --latency "$url")
  echo "$out" >"$WORK/last-wrk.txt"
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /requests in/ { n = $1 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { sockerr = $0 }
    END {
      if (bad > 0 || sockerr != "") { print "bench: wrk saw errors: " bad " " sockerr > "/dev/stderr" }
      printf "%.0f %.3f %.3f %d\n", rps, p50, p99, n
    }' <<<"$out"
}

# Starts "$@" on the server CPU; its PID is left in LAST_PID (no subshell, so cleanup sees it).
start_pinned() {
  taskset -c "$SERVER_CPU" "$@" >"$WORK/server-$RANDOM.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

printf 'machine: %s CPUs, %s; wrk -t1 -c%s -d%s; server on CPU %s, client on CPU %s\n' \
  "$(nproc)" "$(uname -r)" "$CONNECTIONS" "$DURATION" "$SERVER_CPU" "$CLIENT_CPU"

# --- servers ---------------------------------------------------------------------------
BASE_PORT=$(free_port)
start_pinned "$BIN/bench-baseline" "127.0.0.1:$BASE_PORT"
wait_http "http://127.0.0.1:$BASE_PORT/counter"

# metrics-app, memory store, access log on (info): one JSON line per request, written to a
# file as a pod's stdout would be collected.
MEM_PORT=$(free_port)
PASSWORD=bench start_pinned "$BIN/metrics-app" --bind "127.0.0.1:$MEM_PORT" --instance bench-memory
MEM_PID=$LAST_PID
wait_http "http://127.0.0.1:$MEM_PORT/healthz"
RSS_START=$(rss_kib "$MEM_PID")
# RSS once 100k requests have been served, before the throughput rounds add more: the
# reference point for "growth between 100k and 1M requests".
counter_of() { curl -fsS "http://127.0.0.1:$1/counter" | sed 's/Counter value: //'; }
while :; do
  served=$(counter_of "$MEM_PORT")
  [ "$served" -ge 100000 ] && break
  run_wrk "http://127.0.0.1:$MEM_PORT/counter" 1s >/dev/null
done
RSS_100K=$(rss_kib "$MEM_PID")
SERVED_100K=$served

# Same server with the access log off (RUST_LOG=warn): the cost of logging every request.
QUIET_PORT=$(free_port)
PASSWORD=bench RUST_LOG=warn start_pinned "$BIN/metrics-app" --bind "127.0.0.1:$QUIET_PORT" --instance bench-quiet
wait_http "http://127.0.0.1:$QUIET_PORT/healthz"

# metrics-app, Redis store (Redis shares the client's CPU).
REDIS_PORT=$(free_port)
taskset -c "$CLIENT_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" \
  --appendonly yes --appendfsync everysec --save '' >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
REDIS_APP_PORT=$(free_port)
PASSWORD=bench start_pinned "$BIN/metrics-app" --bind "127.0.0.1:$REDIS_APP_PORT" --instance bench-redis \
  --store redis --redis-url "redis://127.0.0.1:$REDIS_PORT/0"
wait_http "http://127.0.0.1:$REDIS_APP_PORT/readyz"

# --- throughput and latency: ROUNDS interleaved rounds, medians reported ------------------
# Interleaving spreads any background drift over every target instead of biasing one.
ROUNDS=${ROUNDS:-3}
declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  for target in base mem quiet redis; do
    case $target in
      base) port=$BASE_PORT ;; mem) port=$MEM_PORT ;; quiet) port=$QUIET_PORT ;; redis) port=$REDIS_APP_PORT ;;
    esac
    RESULTS[$target,$round]=$(run_wrk "http://127.0.0.1:$port/counter" "$DURATION")
    echo "round $round $target: ${RESULTS[$target,$round]}" >&2
  done
done
# median of column $2 (1 req/s, 2 p50, 3 p99) over the rounds of target $1
median() {
  local target=$1 col=$2 r
  for r in $(seq 1 "$ROUNDS"); do echo "${RESULTS[$target,$r]}" | awk -v c="$col" '{print $c}'; done |
    sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
for target in base mem quiet redis; do
  declare "${target^^}_RPS=$(median "$target" 1)" "${target^^}_P50=$(median "$target" 2)" "${target^^}_P99=$(median "$target" 3)"
done

# --- memory over one million requests (on the logging server) ----------------------------
# Keep loading until the counter passes TARGET_REQUESTS (the rounds above usually already did).
while :; do
  served=$(counter_of "$MEM_PORT")
  [ "$served" -ge "$TARGET_REQUESTS" ] && break
  run_wrk "http://127.0.0.1:$MEM_PORT/counter" 5s >/dev/null
done
RSS_1M=$(rss_kib "$MEM_PID")
SERVED_1M=$served

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

echo
echo "medians of $ROUNDS interleaved rounds"
printf '%-36s %12s %10s %10s %12s\n' target 'req/s' 'p50 ms' 'p99 ms' 'vs baseline'
printf '%-36s %12s %10s %10s %12s\n' 'baseline (hyper + atomic)' "$BASE_RPS" "$BASE_P50" "$BASE_P99" '100.0%'
printf '%-36s %12s %10s %10s %12s\n' 'metrics-app memory, access log on' "$MEM_RPS" "$MEM_P50" "$MEM_P99" "$(ratio "$MEM_RPS" "$BASE_RPS")"
printf '%-36s %12s %10s %10s %12s\n' 'metrics-app memory, access log off' "$QUIET_RPS" "$QUIET_P50" "$QUIET_P99" "$(ratio "$QUIET_RPS" "$BASE_RPS")"
printf '%-36s %12s %10s %10s %12s\n' 'metrics-app redis, access log on' "$REDIS_RPS" "$REDIS_P50" "$REDIS_P99" "$(ratio "$REDIS_RPS" "$BASE_RPS")"
echo
echo "redis store vs memory store (both logging): $(ratio "$REDIS_RPS" "$MEM_RPS")"
echo "RSS of the memory-store server: start $(mib "$RSS_START"), after $SERVED_100K requests $(mib "$RSS_100K"), after $SERVED_1M requests $(mib "$RSS_1M"); growth 100k→1M: $(mib $((RSS_1M - RSS_100K)))"
