#!/usr/bin/env bash
# Installs the Debian packages the test suite and the lab need; quiet when all are present.
set -euo pipefail
packages=(
    python3-venv
    systemd-container   # systemd-nspawn: the lab's engine hosts
    debootstrap         # builds the hosts' root filesystem
    docker-registry     # distribution 2.8: the lab's registry
    openssh-client      # ssh-keygen, and the OpenSSH floor of the benchmark
    openssh-server      # sshd for the SSH transport unit tests
    iproute2            # network namespaces, bridge, veth
    busybox-static      # a runnable image for the hosts
    util-linux          # nsenter
    mount               # mount, umount: the hosts' overlays
    ca-certificates
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "system-deps: missing Debian packages (run as root): ${missing[*]}" >&2
        exit 1
    fi
    echo "system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
