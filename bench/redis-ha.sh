#!/usr/bin/env bash
# The Redis production path: the Redis store without and with WAIT (one replica must have each
# batch) in interleaved rounds of one run, Redis commands per /counter for each, and the
# 3-replica topology (nginx in front of three metrics-app that find the primary through three
# Sentinels, WAIT 1) as values-ha runs it. Prints figures; asserts nothing (bench/README.md).
#
#   bash bench/redis-ha.sh                 # about 2 minutes after the release build
#   ROUNDS=5 DURATION=3s bash bench/redis-ha.sh
#
# Layout on a 2-core machine: metrics-app on CPU 0; wrk, Redis, its replica and the Sentinels
# on CPU 1. The topology run puts nginx and all three replicas on CPU 0 too, so its figure is
# what one core serves through a proxy, not what three pods on three nodes would.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

for tool in wrk taskset redis-server redis-sentinel redis-cli nginx curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (Debian packages wrk, util-linux, redis-server, redis-sentinel, redis-tools, nginx, curl)" >&2; exit 2; }
done

cargo build --release --locked -p metrics-app >&2
BIN=${CARGO_TARGET_DIR:-target}/release

# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has cd-ed to the repository root
bench_workspace

# Runs wrk against $1 for $2; prints "req_per_s p99_ms".
run_wrk() {
  local out
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2" --latency "$1")
  awk '
    /Requests\/sec:/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; p99 = v }
    /Non-2xx/ { bad = $NF }
    END { if (bad > 0) print "bench: wrk saw " bad " non-2xx answers" > "/dev/stderr"; printf "%.0f %.3f\n", rps, p99 }' <<<"$out"
}
redis_on() { # port, extra args...
  local port=$1; shift
  taskset -c "$CLIENT_CPU" redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK" \
    --dbfilename "dump-$port.rdb" --appendonly no --save '' "$@" >"$WORK/redis-$port.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 200); do redis-cli -p "$port" PING >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "bench: redis on $port did not start" >&2; exit 1
}
app_on() { # name, public port, management port, extra args...
  local name=$1 port=$2 mgmt=$3; shift 3
  PASSWORD=bench taskset -c "$SERVER_CPU" "$BIN/metrics-app" --bind "127.0.0.1:$port" \
    --management-bind "127.0.0.1:$mgmt" --instance "$name" --store redis "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$mgmt/readyz"
}
calls() { # port, command: how many times Redis ran it
  local n
  n=$(redis-cli -p "$1" INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$2:calls=\([0-9]*\),.*/\1/p")
  echo "${n:-0}"
}

printf 'machine: %s CPUs, %s; wrk -t1 -c%s -d%s, %s interleaved rounds; metrics-app on CPU %s, wrk and Redis on CPU %s\n' \
  "$(nproc)" "$(uname -r)" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$SERVER_CPU" "$CLIENT_CPU"

# --- a primary and its replica ------------------------------------------------------------
PRIMARY=$(free_port); REPLICA=$(free_port)
redis_on "$PRIMARY"
redis_on "$REPLICA" --replicaof 127.0.0.1 "$PRIMARY"
for _ in $(seq 1 200); do
  redis-cli -p "$REPLICA" INFO replication | grep -q master_link_status:up && break
  sleep 0.05
done

# --- without and with WAIT, interleaved ----------------------------------------------------
NOWAIT_PORT=$(free_port); WAIT_PORT=$(free_port)
app_on nowait "$NOWAIT_PORT" "$(free_port)" --redis-url "redis://127.0.0.1:$PRIMARY/0" --redis-key bench:nowait
app_on wait "$WAIT_PORT" "$(free_port)" --redis-url "redis://127.0.0.1:$PRIMARY/0" --redis-key bench:wait \
  --redis-wait-replicas 1 --redis-wait-timeout 100ms
run_wrk "http://127.0.0.1:$NOWAIT_PORT/counter" 1s >/dev/null
run_wrk "http://127.0.0.1:$WAIT_PORT/counter" 1s >/dev/null
declare -A RPS P99 CMDS SERVED
for round in $(seq 1 "$ROUNDS"); do
  for target in nowait wait; do
    port=$NOWAIT_PORT; [ "$target" = wait ] && port=$WAIT_PORT
    # Redis commands per /counter: INCRBY and WAIT calls during the round over the values the
    # round handed out (each target has its own key; only one runs at a time).
    cmds_before=$(( $(calls "$PRIMARY" incrby) + $(calls "$PRIMARY" wait) ))
    value_before=$(redis-cli -p "$PRIMARY" GET "bench:$target" | tr -d '\r')
    read -r rps p99 < <(run_wrk "http://127.0.0.1:$port/counter" "$DURATION")
    cmds_after=$(( $(calls "$PRIMARY" incrby) + $(calls "$PRIMARY" wait) ))
    value_after=$(redis-cli -p "$PRIMARY" GET "bench:$target" | tr -d '\r')
    RPS[$target]+="$rps "; P99[$target]+="$p99 "
    CMDS[$target]=$(( ${CMDS[$target]:-0} + cmds_after - cmds_before ))
    SERVED[$target]=$(( ${SERVED[$target]:-0} + value_after - value_before ))
    echo "round $round $target: $rps req/s, p99 ${p99} ms" >&2
  done
done
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
best() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -n | tail -n 1; }
per() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.3f", c / (n > 0 ? n : 1) }'; }
echo
printf '%-34s %10s %10s %10s %14s\n' target 'median r/s' 'best r/s' 'p99 ms' 'cmds/counter'
printf '%-34s %10s %10s %10s %14s\n' 'redis store, no WAIT' "$(median "${RPS[nowait]}")" "$(best "${RPS[nowait]}")" "$(median "${P99[nowait]}")" "$(per "${CMDS[nowait]}" "${SERVED[nowait]}")"
printf '%-34s %10s %10s %10s %14s\n' 'redis store, WAIT 1 (one replica)' "$(median "${RPS[wait]}")" "$(best "${RPS[wait]}")" "$(median "${P99[wait]}")" "$(per "${CMDS[wait]}" "${SERVED[wait]}")"
awk -v a="$(median "${RPS[wait]}")" -v b="$(median "${RPS[nowait]}")" 'BEGIN { printf "WAIT 1 vs no WAIT (medians): %.1f%%\n", 100 * a / b }'

# --- the 3-replica topology through nginx, Sentinel mode, WAIT 1 --------------------------
SENTINELS=()
for i in 1 2 3; do
  sp=$(free_port)
  printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\n' \
    "$sp" "$WORK" "$PRIMARY" >"$WORK/sentinel-$i.conf"
  taskset -c "$CLIENT_CPU" redis-sentinel "$WORK/sentinel-$i.conf" >"$WORK/sentinel-$i.log" 2>&1 &
  PIDS+=("$!")
  SENTINELS+=("127.0.0.1:$sp")
done
for _ in $(seq 1 200); do redis-cli -p "${SENTINELS[0]##*:}" PING >/dev/null 2>&1 && break; sleep 0.05; done
SENTINEL_LIST=$(IFS=,; echo "${SENTINELS[*]}")
UPSTREAMS=""
for i in 1 2 3; do
  p=$(free_port)
  app_on "replica-$i" "$p" "$(free_port)" --redis-sentinels "$SENTINEL_LIST" --redis-key bench:ha \
    --redis-wait-replicas 1 --redis-wait-timeout 100ms
  UPSTREAMS+="    server 127.0.0.1:$p;"$'\n'
done
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/cb;
  proxy_temp_path $WORK/nginx/tmp/p;
  fastcgi_temp_path $WORK/nginx/tmp/f;
  uwsgi_temp_path $WORK/nginx/tmp/u;
  scgi_temp_path $WORK/nginx/tmp/s;
  upstream metrics_app {
$UPSTREAMS    keepalive 32;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://metrics_app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error;
    }
  }
}
CONF
taskset -c "$SERVER_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" -g 'daemon off;' &
PIDS+=("$!")
wait_http "http://127.0.0.1:$NGINX_PORT/counter"
run_wrk "http://127.0.0.1:$NGINX_PORT/counter" 1s >/dev/null
TOPO=""
TOPO_P99=""
for round in $(seq 1 "$ROUNDS"); do
  read -r rps p99 < <(run_wrk "http://127.0.0.1:$NGINX_PORT/counter" "$DURATION")
  TOPO+="$rps "; TOPO_P99+="$p99 "
  echo "round $round topology: $rps req/s, p99 ${p99} ms" >&2
done
echo
printf '%-34s %10s %10s %10s\n' '3 replicas + nginx, Sentinel, WAIT' "$(median "$TOPO")" "$(best "$TOPO")" "$(median "$TOPO_P99")"
