#!/usr/bin/env bash
# The whole platform path, end to end, on a machine with Docker (it cannot run in this
# project's CI, which has no container engine):
#
#   1. appctl up (kind cluster, image, ArgoCD, git server, secret, every Application)
#   2. helm-test-equivalent checks through the gateway: /healthz, two increasing /counter values
#   3. a rollout of a new image under load with zero failed requests
#   4. appctl rollback to the previous revision, then re-enable auto-sync with appctl up
#   5. appctl down --yes
#
#   bash scripts/e2e-kind.sh            # KEEP=1 keeps the cluster at the end
#
# Needs: docker (running), kind >= 0.29, kubectl >= 1.32, git, curl, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s\n' "$*"; }
fail() { printf 'e2e: FAILED: %s\n' "$*" >&2; exit 1; }

APP=http://metrics-app.localtest.me
export PASSWORD=${PASSWORD:-e2e-$(date +%s)}

cargo build --release --locked -p appctl
APPCTL=$(realpath "${CARGO_TARGET_DIR:-target}/release/appctl")

# Work in a throwaway clone: the rollout makes a commit, the rollback resets it.
WORK=$(mktemp -d)
git clone -q . "$WORK/repo"
cd "$WORK/repo"

cleanup() {
  if [ -z "${KEEP:-}" ]; then "$APPCTL" down --yes || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log "appctl up (dry run, then for real)"
"$APPCTL" up --dry-run
"$APPCTL" up --timeout 25m

log "a second appctl up changes nothing"
"$APPCTL" up --dry-run | tee /tmp/e2e-second-plan.txt
if grep -E '^ *[0-9]+\. run +(create|build|load|install|apply|push)' /tmp/e2e-second-plan.txt; then
  fail "second up planned changes"
fi

log "helm test equivalent through the gateway"
[ "$(curl -fsS "$APP/healthz")" = ok ] || fail "/healthz"
a=$(curl -fsS "$APP/counter" | sed 's/Counter value: //')
b=$(curl -fsS "$APP/counter" | sed 's/Counter value: //')
[ "$b" -gt "$a" ] || fail "/counter did not increase ($a then $b)"
"$APPCTL" status

log "rollout of a new image under load: zero failed requests"
"$APPCTL" load "$APP/counter" --concurrency 4 --duration 150s >/tmp/e2e-load.txt 2>&1 &
LOAD=$!
# A new commit (empty) gives a new image tag; appctl up builds, loads, pushes and syncs it.
git commit --allow-empty -q -m "e2e: rollout $(date +%s)"
ROLLOUT_COMMIT=$(git rev-parse HEAD)
"$APPCTL" up --timeout 10m
wait "$LOAD" || fail "load saw failed requests during the rollout: $(tail -1 /tmp/e2e-load.txt)"
tail -1 /tmp/e2e-load.txt

log "appctl rollback"
"$APPCTL" rollback
"$APPCTL" status
git reset -q --hard "$ROLLOUT_COMMIT~1"
log "back to automated sync"
"$APPCTL" up --timeout 10m
"$APPCTL" credentials

log "appctl down"
"$APPCTL" down --yes
trap 'rm -rf "$WORK"' EXIT
echo "e2e: PASSED"
