#!/usr/bin/env bash
# Helpers shared by the bench scripts (sourced, not run).

# Prints a TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 10 s) until $1 answers 2xx; exits the script if it never does.
wait_http() {
  local url=$1
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: $url did not come up" >&2
  exit 1
}

# A temp dir ($WORK) and the PIDs of what the script starts (PIDS), both cleaned up on exit.
# Call once, before starting anything.
bench_workspace() {
  WORK=$(mktemp -d)
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
