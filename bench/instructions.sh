#!/usr/bin/env bash
# User-space instructions per `GET /counter`, counted by valgrind (cachegrind) for the hyper
# baseline and metrics-app with the access log on and off. Unlike req/s, instruction counts do
# not move with other tenants of the machine, so they show what a code change costs or saves
# even where throughput runs are noisy. Kernel work (the TCP stack: about two thirds of the
# CPU time in bench/run.sh) is not counted. Prints figures; asserts nothing.
#
#   bash bench/instructions.sh
#
# Method: each server runs under `valgrind --tool=cachegrind --cache-sim=no`; a client sends
# LOW and then, in a second run, HIGH requests over 4 keep-alive connections; the figure is
# (instructions(HIGH) - instructions(LOW)) / (HIGH - LOW), which cancels start-up and shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."

LOW=${LOW:-400}
HIGH=${HIGH:-4400}
for tool in valgrind curl python3; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool is required (Debian packages valgrind, curl, python3)" >&2; exit 2; }
done

TARGET_DIR=${CARGO_TARGET_DIR:-target}/instructions
cargo build --release --locked --target-dir "$TARGET_DIR" -p metrics-app --features valgrind >&2
cargo build --release --locked --target-dir "$TARGET_DIR" -p bench-baseline >&2
BIN=$TARGET_DIR/release

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has cd-ed to the repository root

# Sends $2 requests to 127.0.0.1:$1 over 4 keep-alive connections; fails on any non-200.
load() {
  python3 - "$1" "$2" <<'PY'
import http.client, sys, threading
port, total, conns = int(sys.argv[1]), int(sys.argv[2]), 4
failures = []
def worker(count):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        c.request("GET", "/counter")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failures.append(r.status)
threads = [threading.Thread(target=worker, args=(total // conns,)) for _ in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} requests failed: {failures[:5]}")
PY
}

# Instructions executed by the server ($@, with PORT substituted) serving $1 requests.
instructions_for() {
  local requests=$1; shift
  local port out args=()
  port=$(free_port)
  out=$WORK/cachegrind.$RANDOM
  for a in "$@"; do args+=("${a//PORT/$port}"); done
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" "${args[@]}" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/counter" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "instructions: server exited:" >&2; cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
  done
  load "$port" "$requests"
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  awk '/^summary:/ {print $2}' "$out"
}

per_request() {
  local low high
  low=$(instructions_for "$LOW" "$@")
  high=$(instructions_for "$HIGH" "$@")
  echo $(((high - low) / (HIGH - LOW)))
}

BASE=$(per_request "$BIN/bench-baseline" 127.0.0.1:PORT)
ON=$(PASSWORD=bench per_request "$BIN/metrics-app" --bind 127.0.0.1:PORT --management-bind 127.0.0.1:0 --instance bench --drain-delay 0s --access-log)
OFF=$(PASSWORD=bench per_request "$BIN/metrics-app" --bind 127.0.0.1:PORT --management-bind 127.0.0.1:0 --instance bench --drain-delay 0s)

echo "user-space instructions per GET /counter ($((HIGH - LOW)) requests, cachegrind)"
printf '%-36s %10s %10s\n' target instructions 'vs baseline'
printf '%-36s %10s %10s\n' 'baseline (hyper + atomic)' "$BASE" '1.00x'
printf '%-36s %10s %10s\n' 'metrics-app memory, access log on' "$ON" "$(awk -v a="$ON" -v b="$BASE" 'BEGIN {printf "%.2fx", a / b}')"
printf '%-36s %10s %10s\n' 'metrics-app memory (default, no access log)' "$OFF" "$(awk -v a="$OFF" -v b="$BASE" 'BEGIN {printf "%.2fx", a / b}')"
