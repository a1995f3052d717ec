#!/bin/sh
# Create (or refresh) a Python environment for an Ansible controller that runs the trustagent.docker
# collection: ansible-core and trust-agent in the same interpreter, since the action plugin imports
# trust-agent's planner on the controller.
#
#   ansible-compat/scripts/controller-env.sh VENV [--editable] [--ansible-only]
#
# trust-agent is installed from the checkout this script is in (--editable: linked, not copied).
# Idempotent and quick when nothing changed: a stamp in VENV records what was installed, down to a
# digest of trust-agent's files (a copy is installed again when they change).
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

# What the installed trust-agent was made from. A copy needs a new install whenever any file of the
# package changes (its code, its templates); a linked one (--editable) reads the code in place, and
# needs one only when pyproject.toml does (dependencies, entry points).
installed_from() {
    if [ -n "$editable" ]; then
        sha256sum "$project/pyproject.toml" | cut -d' ' -f1
    else
        (cd "$project" && find pyproject.toml agent -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
            -exec sha256sum {} + | LC_ALL=C sort -k2 | sha256sum | cut -d' ' -f1)
    fi
}
want="$ansible_spec"
if [ "$with_agent" = yes ]; then
    want="$want|$editable $project|$(installed_from)"
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
