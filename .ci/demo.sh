#!/usr/bin/env bash
# The main job, end to end on a lab fleet: plan, rollout, real pulls, an HTML report; then the lab goes.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/trust-agent-demo}
PY=.venv/bin/python
TA=$PWD/.venv/bin/trust-agent
lab() { "$PY" -m tests.lab "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

start=$(date +%s)
step "bring up a 3-host lab (systemd + sshd + dockerd each; a TLS registry on S3, two private CAs)"
lab up --dir "$DIR" --hosts 3 --storage ca
trap 'step "take the lab down"; lab down --dir "$DIR"' EXIT
IMAGE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"]["registry"])' "$DIR/lab.json")

COMMON=(--source "$DIR/registry.yml" --storage-ca "$DIR/storage-ca.pem" --registry-ca "$DIR/registry-ca.pem"
        --inventory "$DIR/inventory.yml")
# The registry's name is known to the hosts (their /etc/hosts), not to this machine: rollout's own TLS
# checks from here take its address.
RESOLVE=(--resolve "$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["registry"]; print(r["name"] + ":" + r["address"])' "$DIR/lab.json")")

step "the registry's storage settings, as trust-agent reads them (secrets redacted)"
lab run --dir "$DIR" -- "$TA" show-source "$DIR/registry.yml"

step "before: a pull on h1 fails (the engine does not trust the registry or its storage)"
lab ssh --dir "$DIR" h1 -- docker pull "$IMAGE" || true

step "plan: what would change on every host, and why"
lab run --dir "$DIR" -- "$TA" plan "${COMMON[@]}"

step "rollout: apply, pick up, verify through the docker API and TLS checks from here, with a canary pull"
lab run --dir "$DIR" -- "$TA" rollout "${COMMON[@]}" "${RESOLVE[@]}" --canary-image "$IMAGE" --report "$DIR/report.html"

step "after: a real docker pull on every host"
for host in $("$PY" -c 'import json,sys; print(" ".join(h["name"] for h in json.load(open(sys.argv[1]))["hosts"]))' "$DIR/lab.json"); do
    lab ssh --dir "$DIR" "$host" -- docker rmi -f "$IMAGE" >/dev/null 2>&1 || true
    lab ssh --dir "$DIR" "$host" -- docker pull "$IMAGE"
done

step "a second rollout: every host unchanged, no reload"
lab run --dir "$DIR" -- "$TA" rollout "${COMMON[@]}" "${RESOLVE[@]}"

cp "$DIR/report.html" ./trust-agent-demo-report.html
step "done in $(( $(date +%s) - start ))s; HTML report: $PWD/trust-agent-demo-report.html"
