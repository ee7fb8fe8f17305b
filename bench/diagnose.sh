#!/usr/bin/env bash
# How fast `appctl diagnose` names the two historical bugs, on real processes. Prints figures;
# asserts nothing (the targets are in bench/README.md).
#
#   bash bench/diagnose.sh          # figures
#   SHOW=1 bash bench/diagnose.sh   # also print both text reports (used for docs/diagnose.md)
#
# Scenario 1, slow-even: metrics-app --fault slow-even (every even counter value blocks 21 s and
# leaves CPU burners running), probed with the default 2 s per-request timeout.
# Scenario 2, leak and crash: metrics-app --fault leak=64 under a 300 MiB memory limit (a
# cgroup when this machine lets us create one, else an address-space limit), restarted 1 s
# after it dies by a supervisor loop (as the kubelet would), behind nginx (as the ingress).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in nginx curl python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "bench: $tool is required" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --locked -p metrics-app -p appctl >&2
BIN=${CARGO_TARGET_DIR:-target}/release

WORK=$(mktemp -d)
PIDS=()
CGROUP=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "$BIN/metrics-app burn-cpu" 2>/dev/null || true
  pkill -f "$BIN/metrics-app --bind 127.0.0.1:$LEAK_PORT" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "$CGROUP" ]; then rmdir "$CGROUP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
LEAK_PORT=0
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has cd-ed to the repository root
# Prints the fields of a JSON report the figures need.
fields() {
  python3 -c '
import json, sys
r = json.load(sys.stdin)
kinds = [f["kind"] for f in r["findings"]]
first = r["findings"][0] if r["findings"] else {}
u = next((f for f in r["findings"] if f["kind"] == "unavailable"), {})
print(r["probe"]["requests_sent"], r["probe"]["elapsed_ms"], first.get("named_at_request", "-"),
      u.get("from_request", "-"), ",".join(kinds))'
}

# --- scenario 1: slow-even -------------------------------------------------------------------
SLOW_PORT=$(free_port)
SLOW_MGMT=$(free_port)
PASSWORD=bench RUST_LOG=warn "$BIN/metrics-app" --bind "127.0.0.1:$SLOW_PORT" --fault slow-even \
  --management-bind "127.0.0.1:$SLOW_MGMT" --instance metrics-app-7f9c-x2k4q >/dev/null 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$SLOW_MGMT/healthz"
"$BIN/appctl" diagnose "http://127.0.0.1:$SLOW_PORT/counter" --output json >"$WORK/slow.json" || true
read -r SLOW_SENT SLOW_MS SLOW_NAMED _ SLOW_KINDS < <(fields <"$WORK/slow.json")
if [ -n "${SHOW:-}" ]; then
  echo "----- slow-even, text report"
  "$BIN/appctl" diagnose "http://127.0.0.1:$SLOW_PORT/counter" --metrics "http://127.0.0.1:$SLOW_MGMT/metrics" || true
fi
kill "${PIDS[0]}"

# --- scenario 2: leak, OOM kill, 502 ---------------------------------------------------------
LEAK_PORT=$(free_port)
LEAK_MGMT=$(free_port)
LIMIT_BYTES=$((300 * 1024 * 1024))
if [ -w /sys/fs/cgroup/memory ] && mkdir -p /sys/fs/cgroup/memory/appctl-bench 2>/dev/null; then
  CGROUP=/sys/fs/cgroup/memory/appctl-bench # cgroup v1: a real OOM kill (SIGKILL, 137)
  echo "$LIMIT_BYTES" >"$CGROUP/memory.limit_in_bytes"
  LIMIT_HOW="cgroup v1 memory.limit_in_bytes = 300 MiB (OOM kill, SIGKILL)"
  start_limited() { sh -c "echo \$\$ > $CGROUP/cgroup.procs && exec \"\$@\"" sh "$@"; }
else
  LIMIT_HOW="prlimit --as = 1 GiB (allocation failure aborts the process)"
  start_limited() { prlimit --as=$((1024 * 1024 * 1024)) "$@"; }
fi
(
  while :; do
    PASSWORD=bench RUST_LOG=warn start_limited "$BIN/metrics-app" --bind "127.0.0.1:$LEAK_PORT" \
      --management-bind "127.0.0.1:$LEAK_MGMT" --fault leak=64 --instance metrics-app-5d4b-q8r2n >>"$WORK/leak.log" 2>&1 || true
    sleep 1
  done
) &
PIDS+=("$!")
wait_http "http://127.0.0.1:$LEAK_MGMT/healthz"
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
master_process off;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream app { server 127.0.0.1:$LEAK_PORT; }
  server { listen 127.0.0.1:$NGINX_PORT; location / { proxy_pass http://app; } }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >/dev/null 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$NGINX_PORT/"
"$BIN/appctl" diagnose "http://127.0.0.1:$NGINX_PORT/counter" --timeout 5s --output json >"$WORK/leak.json" || true
read -r LEAK_SENT LEAK_MS LEAK_NAMED LEAK_FROM LEAK_KINDS < <(fields <"$WORK/leak.json")
if [ -n "${SHOW:-}" ]; then
  echo "----- leak and crash, text report (paced 500 ms to watch the restart)"
  sleep 2
  "$BIN/appctl" diagnose "http://127.0.0.1:$NGINX_PORT/counter" --timeout 5s --interval 500ms \
    --requests 16 --no-early-stop || true
fi

echo
echo "memory limit: $LIMIT_HOW"
echo "named at: requests sent when the most severe finding first appeared; sent: when the probe stopped (verdict certain)"
printf '%-32s %9s %6s %12s  %s\n' scenario 'named at' sent 'elapsed ms' findings
printf '%-32s %9s %6s %12s  %s\n' 'slow-even (21 s, timeout 2 s)' "$SLOW_NAMED" "$SLOW_SENT" "$SLOW_MS" "$SLOW_KINDS"
printf '%-32s %9s %6s %12s  %s\n' 'leak=64 MB, 300 MiB limit' "$LEAK_NAMED" "$LEAK_SENT" "$LEAK_MS" "$LEAK_KINDS"
if [ "$LEAK_FROM" != "-" ] && [ "$LEAK_NAMED" != "-" ]; then
  echo "crash: first failed request #$LEAK_FROM; unavailable named after $((LEAK_NAMED - LEAK_FROM + 1)) request(s) since the crash"
fi
