# Per-test reset of one lab host's trust state (run as root over SSH).
set -eu
base=/usr/local/share/trust-agent-lab/daemon.json
rm -rf /etc/docker/certs.d/* /var/lib/trust-agent
# Images from the lab registry: a later pull must fetch blobs again, or it would prove nothing.
# By ID: an image held by its digest alone has no tag to name it.
docker images --format '{{.Repository}} {{.ID}}' | awk '$1 ~ /^registry\.test/ {print $2}' | sort -u |
    xargs -r docker rmi -f >/dev/null
# A daemon.json a test left as a link is replaced by the base file, never written through the link.
if [ -L /etc/docker/daemon.json ] || ! cmp -s "$base" /etc/docker/daemon.json; then
    cp --remove-destination "$base" /etc/docker/daemon.json
    # A reload does not clear insecure-registries; only a restart returns to the base config.
    systemctl reset-failed docker.service docker.socket 2>/dev/null || true
    systemctl restart docker
fi
systemctl is-active -q docker
