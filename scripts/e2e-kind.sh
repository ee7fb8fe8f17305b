#!/usr/bin/env bash
# The whole platform path, end to end, on a machine with Docker (the `e2e-kind` job of
# .github/workflows/ci.yml; it cannot run in this project's own CI, which has no container
# engine). It asserts what a user sees, in this order:
#
#   1. appctl up (dry run, then for real), and a second up plans no changes
#   2. the HA profile: /counter through the gateway strictly increases across several
#      replicas, and Valkey holds the count (one shared counter, not one per pod)
#   3. a rollout of a new image under load with zero failed requests
#   4. appctl rollback: the Deployment runs the previous image again, the count goes on;
#      then back to automated sync with appctl up
#   5. an alert reaches Alertmanager's receiver: the leak fault mode (enabled through git)
#      gets a pod OOMKilled, and MetricsAppOOMKilled/MetricsAppRestarting is active at
#      Alertmanager, routed to the receiver `metrics-app`
#      (deploy/platform/kube-prometheus-stack-values.yaml), not to the catch-all "null"
#   6. appctl down leaves nothing behind: no kind cluster, no node container, no kubeconfig
#      context
#
#   bash scripts/e2e-kind.sh     # KEEP=1 keeps the cluster (and skips step 6)
#                                # E2E_ALERT_RECEIVER=NAME: another receiver in step 5
#
# It works on a throwaway clone of the committed HEAD (uncommitted changes are not tested): the
# rollout and the fault mode are commits there. Every wait is bounded; a failure prints the
# cluster's state before the cluster is deleted.
#
# Needs: docker (running), kind >= 0.29, kubectl >= 1.32, git, curl, python3, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s\n' "$*"; }
fail() {
  printf '\ne2e: FAILED: %s\n' "$*" >&2
  exit 1
}

CLUSTER=metrics-app # appctl's cluster name (crates/appctl/src/platform/tools.rs)
CONTEXT=kind-$CLUSTER
NS=metrics-app
APP=http://metrics-app.localtest.me
export PASSWORD=${PASSWORD:-e2e-$(date +%s)}

for tool in docker kind kubectl git curl python3 cargo; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (needs: docker, kind, kubectl, git, curl, python3, cargo)"
done
docker info >/dev/null 2>&1 || fail "docker is installed but its daemon does not answer (is Docker running?)"
# The script deletes the cluster at the end: never take over one that was there before.
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  fail "a kind cluster named $CLUSTER already exists and this script would delete it; run 'appctl down' first"
fi

k() { kubectl --context "$CONTEXT" "$@"; }

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every 5 s until it succeeds; after SECONDS,
# fails naming WHAT and showing COMMAND's last output.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs)) out
  until out=$("$@" 2>&1); do
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "$what: not within ${secs}s; last check said: $(printf '%s' "$out" | tail -n 5)"
    fi
    sleep 5
  done
}

cargo build --release --locked -p appctl
APPCTL=$(realpath "${CARGO_TARGET_DIR:-target}/release/appctl")

WORK=$(mktemp -d)
git clone -q . "$WORK/repo"
cd "$WORK/repo"
git config user.name "metrics-app e2e"
git config user.email "e2e@localhost"

diagnostics() {
  printf '\n=== cluster state at the failure\n'
  k -n argocd get applications -o wide || true
  k get pods -A -o wide || true
  k -n "$NS" describe pods 2>/dev/null | tail -n 80 || true
  k get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 || true
  "$APPCTL" status || true
}
DOWN_DONE=0
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then diagnostics; fi
  if [ -z "${KEEP:-}" ] && [ "$DOWN_DONE" = 0 ]; then "$APPCTL" down --yes || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The image the Deployment's metrics-app container runs.
deployed_image() {
  k -n "$NS" get deployment metrics-app -o jsonpath='{.spec.template.spec.containers[?(@.name=="metrics-app")].image}'
}
image_is() {
  local now
  now=$(deployed_image)
  [ "$now" = "$1" ] || {
    echo "the Deployment runs '$now', want '$1'"
    return 1
  }
}
expected_image() { echo "metrics-app:$(git rev-parse --short=12 HEAD)"; }
rolled_out() { k -n "$NS" rollout status deployment/metrics-app --timeout=10s; }

# check_shared_counter N: N requests to /counter through the gateway; the values must strictly
# increase and come from at least two replicas (X-Instance), which only one shared store can
# give. Sets LAST_COUNTER.
LAST_COUNTER=-1
check_shared_counter() {
  local n=$1 i body value instance prev=$LAST_COUNTER instances=""
  for ((i = 1; i <= n; i++)); do
    body=$(curl -fsS --max-time 10 -D "$WORK/headers" "$APP/counter") ||
      fail "GET $APP/counter (request $i of $n) failed"
    value=${body#Counter value: }
    instance=$(sed -n 's/^[Xx]-[Ii]nstance: *//p' "$WORK/headers" | tr -d '\r')
    [[ $value =~ ^[0-9]+$ ]] || fail "GET $APP/counter answered '$body', not 'Counter value: N'"
    [ "$value" -gt "$prev" ] ||
      fail "/counter went from $prev to $value (request $i, instance $instance): replicas do not share one counter"
    prev=$value
    instances=$(printf '%s\n%s\n' "$instances" "$instance" | sed '/^$/d' | sort -u)
  done
  [ "$(grep -c . <<<"$instances")" -ge 2 ] ||
    fail "all $n answers came from one instance ($instances); the HA profile runs 3 replicas behind the gateway"
  echo "    $n answers, strictly increasing to $prev, from $(grep -c . <<<"$instances") instances"
  LAST_COUNTER=$prev
}

log "1. appctl up (dry run, then for real)"
"$APPCTL" up --dry-run
"$APPCTL" up --timeout 25m
out=$(image_is "$(expected_image)") || fail "after appctl up: $out"

log "1. a second appctl up changes nothing"
"$APPCTL" up --dry-run | tee "$WORK/second-plan.txt"
if grep -E '^ *[0-9]+\. run +(create|build|load|install|apply|push)' "$WORK/second-plan.txt"; then
  fail "a second appctl up planned the changes above"
fi

log "2. HA profile: one counter in Valkey behind the gateway"
# Probes are on the management port, inside the cluster only: through the gateway, the public root.
curl -fsS --max-time 10 "$APP/" | grep -q "Metrics Dashboard" || fail "GET $APP/ did not answer the dashboard title"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$APP/metrics")
[ "$code" = 404 ] || fail "GET $APP/metrics answered $code through the gateway; metrics must stay inside the cluster"
wait_for "the metrics-app Deployment rolled out" 300 rolled_out
replicas=$(k -n "$NS" get deployment metrics-app -o jsonpath='{.status.readyReplicas}')
[ "${replicas:-0}" -ge 2 ] || fail "the HA profile should run at least 2 ready replicas, found ${replicas:-0}"
check_shared_counter 30
valkey=$(k -n "$NS" get pods -l app.kubernetes.io/name=valkey -o jsonpath='{.items[0].metadata.name}')
[ -n "$valkey" ] || fail "no Valkey pod (label app.kubernetes.io/name=valkey) in namespace $NS"
stored=$(k -n "$NS" exec "$valkey" -- valkey-cli GET metrics-app:counter | tr -d '\r')
if ! [[ $stored =~ ^[0-9]+$ ]] || [ "$stored" -lt "$LAST_COUNTER" ]; then
  fail "Valkey's metrics-app:counter is '$stored', but the gateway answered $LAST_COUNTER: the app does not count in Valkey"
fi
echo "    Valkey holds metrics-app:counter = $stored"
"$APPCTL" status

log "3. rollout of a new image under load: zero failed requests"
IMAGE_BEFORE=$(deployed_image)
"$APPCTL" load "$APP/counter" --concurrency 4 --duration 150s >"$WORK/load.txt" 2>&1 &
LOAD=$!
# A new commit (empty) gives a new image tag; appctl up builds, loads, pushes and syncs it.
git commit --allow-empty -q -m "e2e: rollout $(date +%s)"
ROLLOUT_COMMIT=$(git rev-parse HEAD)
"$APPCTL" up --timeout 10m
wait "$LOAD" || fail "load saw failed requests during the rollout: $(tail -n 1 "$WORK/load.txt")"
tail -n 1 "$WORK/load.txt"
IMAGE_AFTER=$(expected_image)
[ "$IMAGE_AFTER" != "$IMAGE_BEFORE" ] || fail "the rollout commit did not change the image tag ($IMAGE_AFTER)"
wait_for "the Deployment runs the new image $IMAGE_AFTER" 300 image_is "$IMAGE_AFTER"
wait_for "the new image rolled out" 300 rolled_out

log "4. appctl rollback: the previous image comes back"
"$APPCTL" rollback
wait_for "after appctl rollback, the Deployment runs the previous image $IMAGE_BEFORE" 600 image_is "$IMAGE_BEFORE"
wait_for "the rollback rolled out" 300 rolled_out
check_shared_counter 10
"$APPCTL" status

log "4. back to automated sync at the previous commit"
git reset -q --hard "$ROLLOUT_COMMIT~1"
"$APPCTL" up --timeout 10m
wait_for "after appctl up, the Deployment runs $IMAGE_BEFORE" 300 image_is "$IMAGE_BEFORE"
"$APPCTL" credentials >/dev/null || fail "appctl credentials failed"

log "5. an alert reaches Alertmanager's receiver"
# The leak fault mode (100 MB kept per request, limit 128 Mi) through git, as a user would.
VALUES=charts/metrics-app/values-ha.yaml
python3 - "$VALUES" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(text.replace("\n  store: redis\n", '\n  store: redis\n  faults: ["leak=100"]\n', 1))
EOF
grep -q '^  faults: \["leak=100"\]$' "$VALUES" ||
  fail "could not enable app.faults in $VALUES (its 'app:' block changed); update this script"
git commit -q -am "e2e: leak fault mode"
"$APPCTL" up --timeout 10m

oomkilled() {
  local reasons
  reasons=$(k -n "$NS" get pods -l app.kubernetes.io/name=metrics-app \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[*].lastState.terminated.reason}{"\n"}{end}')
  grep -q OOMKilled <<<"$reasons" || {
    echo "no OOMKilled container yet: $reasons"
    return 1
  }
}
request_then_oomkilled() {
  curl -s -o /dev/null --max-time 10 "$APP/counter" || true
  oomkilled
}
wait_for "a metrics-app pod OOMKilled under the leak fault mode" 300 request_then_oomkilled

AM_POD=$(k -n monitoring get pods -l app.kubernetes.io/name=alertmanager -o jsonpath='{.items[0].metadata.name}')
[ -n "$AM_POD" ] || fail "no Alertmanager pod (label app.kubernetes.io/name=alertmanager) in namespace monitoring"
# Asked from inside the pod (busybox wget on localhost): no port-forward, no NetworkPolicy.
alert_at_receiver() {
  k -n monitoring exec "$AM_POD" -c alertmanager -- \
    wget -qO- 'http://127.0.0.1:9093/api/v2/alerts?active=true&silenced=false&inhibited=false' >"$WORK/alerts.json" ||
    return 1
  python3 - "$WORK/alerts.json" "${E2E_ALERT_RECEIVER:-metrics-app}" <<'EOF'
import json, sys

alerts = json.load(open(sys.argv[1]))
want = sys.argv[2]
ours = [a for a in alerts if a["labels"].get("alertname") in ("MetricsAppOOMKilled", "MetricsAppRestarting")]
if not ours:
    print(f"{len(alerts)} active alert(s), none MetricsAppOOMKilled/MetricsAppRestarting yet")
    sys.exit(1)
for a in ours:
    receivers = [r["name"] for r in a.get("receivers", [])]
    print(f'{a["labels"]["alertname"]} ({a["labels"].get("pod", "-")}): {a["status"]["state"]}, receivers {receivers}')
    if a["status"]["state"] == "active" and any(r != "null" and (not want or r == want) for r in receivers):
        sys.exit(0)
print("routed only to " + ("receivers other than " + want if want else 'the catch-all "null" receiver'))
sys.exit(1)
EOF
}
wait_for "MetricsAppOOMKilled or MetricsAppRestarting active at Alertmanager, routed to the receiver ${E2E_ALERT_RECEIVER:-metrics-app}" 600 alert_at_receiver
alert_at_receiver

if [ -n "${KEEP:-}" ]; then
  log "KEEP=1: the cluster stays (appctl down --yes removes it); step 6 skipped"
  echo "e2e: PASSED (steps 1-5)"
  exit 0
fi

log "6. appctl down leaves nothing behind"
"$APPCTL" down --yes
DOWN_DONE=1
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then fail "kind still lists the cluster $CLUSTER"; fi
nodes=$(docker ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}')
[ -z "$nodes" ] || fail "node containers of $CLUSTER are still there: $nodes"
if kubectl config get-contexts -o name | grep -qx "$CONTEXT"; then
  fail "the kubeconfig still has the context $CONTEXT"
fi
echo "    no cluster, no node container, no kubeconfig context"
images=$(docker images --filter reference='metrics-app' --format '{{.Repository}}:{{.Tag}}' | tr '\n' ' ')
echo "    kept on purpose: the locally built images ($images), reused by the next appctl up"
echo "e2e: PASSED"
