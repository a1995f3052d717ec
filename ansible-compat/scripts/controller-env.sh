#!/bin/sh
# Create (or refresh) a Python environment for an Ansible controller that runs the trustagent.docker
# collection: ansible-core and trust-agent in the same interpreter, since the action plugin imports
# trust-agent's planner on the controller.
#
#   ansible-compat/scripts/controller-env.sh VENV [--editable] [--ansible-only]
#
# trust-agent is installed from the checkout this script is in (--editable: linked, not copied).
# Idempotent and quick when nothing changed: a stamp in VENV records what was installed.
set -eu
usage() { echo "usage: $0 VENV [--editable] [--ansible-only]" >&2; exit 2; }
[ $# -ge 1 ] || usage
venv=$1; shift
editable=""; with_agent=yes
for arg in "$@"; do
    case "$arg" in
        --editable) editable=-e ;;
        --ansible-only) with_agent=no ;;
        *) usage ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
ansible_spec=${TRUST_AGENT_ANSIBLE_SPEC:-ansible-core>=2.16,<2.20}
python=${PYTHON:-python3}

want="$ansible_spec"
if [ "$with_agent" = yes ]; then
    want="$want|$editable $project|$(sha256sum "$project/pyproject.toml" | cut -d' ' -f1)"
fi
stamp="$venv/.trust-agent-controller"
if [ -x "$venv/bin/ansible-playbook" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$ansible_spec"
if [ "$with_agent" = yes ]; then
    # shellcheck disable=SC2086 # $editable is empty or one flag
    "$venv/bin/pip" install --quiet --disable-pip-version-check $editable "$project"
fi
printf '%s' "$want" > "$stamp"
