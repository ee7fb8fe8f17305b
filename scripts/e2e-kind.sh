#!/usr/bin/env bash
# The whole platform path, end to end, on a machine with Docker (the `e2e-kind` job of
# .github/workflows/ci.yml; it cannot run in this project's own CI, which has no container
# engine). It asserts what a user sees, in this order:
#
#   1. appctl up --env dev,staging,prod (dry run, then for real): every environment runs the
#      image built and answers on its hostname; a second up plans no changes
#   2. prod (the HA profile): /counter through the gateway strictly increases across several
#      replicas, and Redis holds the count (one shared counter, not one per pod: the redis-ha
#      release of prod's namespace, a primary and two replicas behind Sentinels); its primary
#      killed under load: a replica is promoted, /counter answers again, no value twice
#   3. a new commit: appctl up deploys its image to dev only, staging and prod keep theirs
#   4. promotion as a commit: appctl promote --from dev --to staging, staging runs dev's image
#      and appctl status says so; appctl rollback --env staging (a revert commit), staging runs
#      its old image again
#   5. a promotion to prod under load with zero failed requests
#   6. appctl rollback --app metrics-app-prod (ArgoCD history): prod runs the previous image
#      again, the count goes on; made permanent with rollback --env prod, then back to
#      automated sync with appctl up
#   7. an alert reaches Alertmanager's receiver: the leak fault mode (enabled through git)
#      gets a prod pod OOMKilled, and MetricsAppOOMKilled/MetricsAppRestarting is active at
#      Alertmanager, routed to the receiver `metrics-app`
#      (deploy/platform/kube-prometheus-stack-values.yaml), not to the catch-all "null"
#   8. appctl down leaves nothing behind: no kind cluster, no node container, no kubeconfig
#      context
#   9. the same delivery with Flux: appctl up --gitops flux --env dev,staging, every
#      environment answers; a new commit reaches dev only; promote dev -> staging and
#      rollback --env staging under Flux; appctl down
#
#   bash scripts/e2e-kind.sh     # KEEP=1 keeps the cluster (and skips step 8)
#                                # E2E_ALERT_RECEIVER=NAME: another receiver in step 7
#
# It works on a throwaway clone of the committed HEAD (uncommitted changes are not tested): the
# new image and the fault mode are commits there; promotions and their rollbacks are commits
# appctl makes in the in-cluster repository. Every wait is bounded; a failure prints the
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
# deploy/argocd/values.yaml: environment ENV runs in namespace metrics-app-ENV, on ENV.metrics-app.localtest.me
ENVS=dev,staging,prod
NS=metrics-app-prod # the HA environment: replicas, Redis with Sentinels, HPA, alerts
APP=http://prod.metrics-app.localtest.me
ns_of() { echo "metrics-app-$1"; }
url_of() { echo "http://$1.metrics-app.localtest.me"; }
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
  for env in ${ENVS//,/ }; do k -n "$(ns_of "$env")" describe pods 2>/dev/null | tail -n 40 || true; done
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

# The image the metrics-app container of namespace $1's Deployment runs.
deployed_image() {
  k -n "$1" get deployment metrics-app -o jsonpath='{.spec.template.spec.containers[?(@.name=="metrics-app")].image}'
}
rolled_out() { k -n "$1" rollout status deployment/metrics-app --timeout=10s; }
# image_is NAMESPACE IMAGE: the Deployment runs IMAGE, rolled out.
image_is() {
  local now
  now=$(deployed_image "$1")
  [ "$now" = "$2" ] || {
    echo "the Deployment in $1 runs '$now', want '$2'"
    return 1
  }
  rolled_out "$1"
}
expected_image() { echo "metrics-app:$(git rev-parse --short=12 HEAD)"; }
# envs_serve ENVS IMAGE WHEN: every environment of the comma-separated ENVS runs IMAGE, rolled
# out, and answers a counter on its hostname; WHEN names the step in the failure.
envs_serve() {
  local env out
  for env in ${1//,/ }; do
    out=$(image_is "$(ns_of "$env")" "$2") || fail "$3, $env: $out"
    curl -fsS --max-time 10 "$(url_of "$env")/counter" | grep -q "^Counter value: " ||
      fail "$3: GET $(url_of "$env")/counter did not answer a counter"
  done
}

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

log "1. appctl up --env $ENVS (dry run, then for real)"
"$APPCTL" up --dry-run --env "$ENVS"
"$APPCTL" up --env "$ENVS" --timeout 25m
IMAGE_BEFORE=$(expected_image)
envs_serve "$ENVS" "$IMAGE_BEFORE" "after appctl up"

log "1. a second appctl up changes nothing"
"$APPCTL" up --dry-run --env "$ENVS" | tee "$WORK/second-plan.txt"
if grep -E '^ *[0-9]+\. run +(create|build|load|install|apply|push|commit)' "$WORK/second-plan.txt"; then
  fail "a second appctl up planned the changes above"
fi

log "2. prod (HA profile): one counter in Redis behind the gateway"
# Probes are on the management port, inside the cluster only: through the gateway, the public root.
curl -fsS --max-time 10 "$APP/" | grep -q "Metrics Dashboard" || fail "GET $APP/ did not answer the dashboard title"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$APP/metrics")
[ "$code" = 404 ] || fail "GET $APP/metrics answered $code through the gateway; metrics must stay inside the cluster"
wait_for "the prod Deployment rolled out" 300 rolled_out "$NS"
replicas=$(k -n "$NS" get deployment metrics-app -o jsonpath='{.status.readyReplicas}')
[ "${replicas:-0}" -ge 2 ] || fail "the HA profile should run at least 2 ready replicas, found ${replicas:-0}"
check_shared_counter 30
# The redis-ha chart's pods (labels app and release = redis-ha), container redis. The primary
# has every increment, a replica may lag: the highest value of the three is the primary's.
redis_pods=$(k -n "$NS" get pods -l app=redis-ha,release=redis-ha -o jsonpath='{.items[*].metadata.name}')
[ -n "$redis_pods" ] || fail "no redis-ha pod (labels app=redis-ha, release=redis-ha) in namespace $NS"
stored=-1
for pod in $redis_pods; do
  value=$(k -n "$NS" exec "$pod" -c redis -- redis-cli GET metrics-app:counter | tr -d '\r')
  if [[ $value =~ ^[0-9]+$ ]] && [ "$value" -gt "$stored" ]; then stored=$value; fi
done
if [ "$stored" -lt "$LAST_COUNTER" ]; then
  fail "Redis's metrics-app:counter is at most '$stored', but the gateway answered $LAST_COUNTER: the app does not count in Redis"
fi
echo "    Redis holds metrics-app:counter = $stored"
"$APPCTL" status

log "2. prod: the Redis primary is killed under load; the Sentinels promote a replica, no value twice"
# The primary is the pod whose Redis says ROLE master.
primary=""
for pod in $redis_pods; do
  role=$(k -n "$NS" exec "$pod" -c redis -- redis-cli ROLE | head -n 1 | tr -d '\r')
  [ "$role" = master ] && primary=$pod
done
[ -n "$primary" ] || fail "no redis-ha pod says ROLE master"
echo "    primary: $primary"
: >"$WORK/failover-values.txt"
failover_load() { # GET /counter for at most 180 s, one status and value per line
  local end=$((SECONDS + 180)) body code
  while [ $SECONDS -lt $end ] && [ ! -e "$WORK/failover-stop" ]; do
    body=$(curl -s --max-time 5 -w '\n%{http_code}' "$APP/counter") || body=$'\n000'
    code=${body##*$'\n'}
    echo "$code ${body%%$'\n'*}" >>"$WORK/failover-values.txt"
    sleep 0.05
  done
}
failover_load &
LOAD_PID=$!
answered_some() { [ "$(grep -c '^200 ' "$WORK/failover-values.txt")" -ge 20 ]; }
wait_for "20 answers from the old primary first" 60 answered_some
k -n "$NS" delete pod "$primary" --grace-period=0 --force --wait=false
promoted() {
  local pod now
  for pod in $redis_pods; do
    [ "$pod" = "$primary" ] && continue
    now=$(k -n "$NS" exec "$pod" -c redis -- redis-cli ROLE 2>/dev/null | head -n 1 | tr -d '\r')
    [ "$now" = master ] && return 0
  done
  echo "no other pod is primary yet"
  return 1
}
wait_for "a replica promoted by the Sentinels" 120 promoted
served_after() { [ "$(tail -n 20 "$WORK/failover-values.txt" | grep -c '^200 ')" -ge 10 ]; }
wait_for "prod serves /counter again after the failover" 120 served_after
touch "$WORK/failover-stop"
wait "$LOAD_PID" || true
dups=$(sed -n 's/^200 Counter value: //p' "$WORK/failover-values.txt" | sort -n | uniq -d)
[ -z "$dups" ] || fail "values handed out twice across the failover: $(echo "$dups" | head -5 | tr '\n' ' ')"
ok=$(grep -c '^200 ' "$WORK/failover-values.txt" || true)
failed=$(grep -vc '^200 ' "$WORK/failover-values.txt" || true)
other=$(grep -v '^200 ' "$WORK/failover-values.txt" | grep -vc '^503 ' || true)
[ "$other" -eq 0 ] || fail "during the failover some answers were neither 200 nor 503: $(grep -v '^200 ' "$WORK/failover-values.txt" | grep -v '^503 ' | head -3)"
echo "    $ok answered, $failed answered 503 during the failover, no value twice"

log "3. a new commit: appctl up deploys it to dev, staging and prod keep their image"
# A new commit (empty) gives a new image tag; appctl up builds, loads and pushes it, and commits
# it for dev in the in-cluster repository, carrying the other environments' images over.
git commit --allow-empty -q -m "e2e: new image $(date +%s)"
ROLLOUT_COMMIT=$(git rev-parse HEAD)
"$APPCTL" up --env "$ENVS" --timeout 10m
IMAGE_AFTER=$(expected_image)
[ "$IMAGE_AFTER" != "$IMAGE_BEFORE" ] || fail "the new commit did not change the image tag ($IMAGE_AFTER)"
wait_for "dev runs the new image $IMAGE_AFTER" 300 image_is "$(ns_of dev)" "$IMAGE_AFTER"
for env in staging prod; do
  out=$(image_is "$(ns_of "$env")" "$IMAGE_BEFORE") || fail "appctl up changed $env's image: $out"
done

log "4. promotion as a commit: dev -> staging, then rollback --env staging"
"$APPCTL" promote --from dev --to staging | tee "$WORK/promote.txt"
grep -qF "promote staging to $IMAGE_AFTER (from dev)" "$WORK/promote.txt" ||
  fail "appctl promote did not report the commit 'promote staging to $IMAGE_AFTER (from dev)'"
wait_for "staging runs dev's image $IMAGE_AFTER" 300 image_is "$(ns_of staging)" "$IMAGE_AFTER"
staging_in_status() {
  "$APPCTL" status --output json >"$WORK/status.json" || return 1
  python3 - "$WORK/status.json" "$1" <<'PY'
import json, sys
status, want = json.load(open(sys.argv[1])), sys.argv[2]
staging = next((e for e in status["environments"] if e["env"] == "staging"), None)
app = (staging or {}).get("application", {})
if not staging or staging["wants"] != want or staging["runs"] != want or app.get("sync") != "Synced":
    print(f"appctl status says {staging}, want {want} wanted, running and Synced")
    sys.exit(1)
print(f'    appctl status: staging wants and runs {want}, {app["sync"]}/{app["health"]}')
PY
}
wait_for "appctl status shows staging Synced on $IMAGE_AFTER" 120 staging_in_status "$IMAGE_AFTER"
staging_in_status "$IMAGE_AFTER"
if "$APPCTL" promote --from dev --to staging 2>"$WORK/again.txt"; then
  fail "a second identical promotion succeeded; it must refuse (nothing to promote)"
fi
grep -q "staging already runs dev's image" "$WORK/again.txt" || fail "unexpected refusal: $(cat "$WORK/again.txt")"
"$APPCTL" rollback --env staging | tee "$WORK/rollback.txt"
grep -qF "roll back staging to $IMAGE_BEFORE" "$WORK/rollback.txt" ||
  fail "appctl rollback --env staging did not report 'roll back staging to $IMAGE_BEFORE'"
wait_for "after rollback --env staging, staging runs its old image $IMAGE_BEFORE" 300 image_is "$(ns_of staging)" "$IMAGE_BEFORE"

log "5. a promotion to prod under load: zero failed requests"
"$APPCTL" load "$APP/counter" --concurrency 4 --duration 150s >"$WORK/load.txt" 2>&1 &
LOAD=$!
"$APPCTL" promote --from dev --to prod
wait_for "prod runs the new image $IMAGE_AFTER" 300 image_is "$NS" "$IMAGE_AFTER"
wait "$LOAD" || fail "load saw failed requests during the rollout: $(tail -n 1 "$WORK/load.txt")"
tail -n 1 "$WORK/load.txt"

log "6. appctl rollback (ArgoCD history): prod runs the previous image again"
"$APPCTL" rollback --app metrics-app-prod
wait_for "after appctl rollback, prod runs the previous image $IMAGE_BEFORE" 600 image_is "$NS" "$IMAGE_BEFORE"
check_shared_counter 10
"$APPCTL" status

log "6. made permanent in git (rollback --env prod), then back to automated sync"
"$APPCTL" rollback --env prod
git reset -q --hard "$ROLLOUT_COMMIT~1"
"$APPCTL" up --env "$ENVS" --timeout 10m
wait_for "after appctl up, prod still runs $IMAGE_BEFORE" 300 image_is "$NS" "$IMAGE_BEFORE"
"$APPCTL" credentials >/dev/null || fail "appctl credentials failed"

log "7. an alert reaches Alertmanager's receiver"
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
"$APPCTL" up --env "$ENVS" --timeout 10m

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
  log "KEEP=1: the cluster stays (appctl down --yes removes it); step 8 skipped"
  echo "e2e: PASSED (steps 1-7)"
  exit 0
fi

log "8. appctl down leaves nothing behind"
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

log "9. Flux as the engine: appctl up --gitops flux, a promotion and its rollback as commits"
DOWN_DONE=0
FLUX_ENVS=dev,staging
"$APPCTL" up --gitops flux --dry-run --env "$FLUX_ENVS"
"$APPCTL" up --gitops flux --env "$FLUX_ENVS" --timeout 25m
FLUX_BEFORE=$(expected_image)
envs_serve "$FLUX_ENVS" "$FLUX_BEFORE" "after appctl up --gitops flux"
k get applications.argoproj.io -A >/dev/null 2>&1 && fail "ArgoCD's CRDs are installed on the Flux cluster"
k -n flux-system get kustomizations.kustomize.toolkit.fluxcd.io metrics-app-dev >/dev/null ||
  fail "no Flux Kustomization metrics-app-dev"
git commit --allow-empty -q -m "e2e: new image under Flux $(date +%s)"
"$APPCTL" up --gitops flux --env "$FLUX_ENVS" --timeout 10m
FLUX_AFTER=$(expected_image)
wait_for "Flux: dev runs the new image $FLUX_AFTER" 300 image_is "$(ns_of dev)" "$FLUX_AFTER"
out=$(image_is "$(ns_of staging)" "$FLUX_BEFORE") || fail "Flux: appctl up changed staging's image: $out"
"$APPCTL" promote --from dev --to staging
wait_for "Flux: staging runs dev's image $FLUX_AFTER" 300 image_is "$(ns_of staging)" "$FLUX_AFTER"
"$APPCTL" status
"$APPCTL" rollback --env staging
wait_for "Flux: after rollback --env staging, staging runs $FLUX_BEFORE" 300 image_is "$(ns_of staging)" "$FLUX_BEFORE"
"$APPCTL" down --yes
DOWN_DONE=1
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then fail "Flux run: kind still lists the cluster $CLUSTER"; fi

echo "e2e: PASSED"
