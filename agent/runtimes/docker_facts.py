"""What the Docker planner needs to know about one host, gathered in one round trip."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CERTS_DIR = "/etc/docker/certs.d"
DAEMON_JSON = "/etc/docker/daemon.json"
STATE_FILE = "/var/lib/trust-agent/docker-state.json"


@dataclass(frozen=True)
class DockerFacts:
    """Current state of one host's Docker trust configuration.

    ``certs`` maps ``"<registry>/<file>"`` (relative to ``certs_dir``) to contents, for every file in
    every directory directly under certs.d; ``cert_dirs`` lists those directories (even empty ones). A
    private key found in one of the agent's own CA files is redacted there (one line says its length):
    it never reaches a plan, diff or report.
    ``daemon_json`` is ``None`` when the file does not exist. ``dockerd_flags`` are the daemon's
    command-line arguments (from the unit's ExecStart and drop-ins, or /proc/<pid>/cmdline), with
    ``flags_source`` saying where they were read.
    """

    certs_dir: str = CERTS_DIR
    daemon_json_path: str = DAEMON_JSON
    state_path: str = STATE_FILE
    certs: Mapping[str, bytes] = field(default_factory=dict)
    cert_dirs: frozenset[str] = frozenset()
    # Owner uid and permission bits of the agent's own CA files (``"<registry>/<file>"``) and of the
    # certs.d directories that hold them (``"<registry>"``); empty where not read (nothing to read).
    cert_owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    certs_dir_present: bool = True  # certs.d itself exists (False: a plan that needs it creates it)
    # Why the apply writes nothing into certs.d itself (a link to nothing; it, or a directory above it,
    # writable by a user other than root), in the apply's words; None: nothing stops it.
    certs_dir_problem: str | None = None
    daemon_json: bytes | None = None
    # Where daemon_json_path is a symlink: its target, resolved on the host ("" where not resolved: a
    # --root tree). The target is written and the link kept, as a person or tool made it.
    daemon_json_link: str | None = None
    state: bytes | None = None  # the agent's own record of what it added
    engine_version: str | None = None  # "20.10.24", "26.1.5"; None: no engine found (image baking)
    dockerd_flags: tuple[str, ...] = ()
    flags_source: str | None = None
    has_validate: bool | None = None  # `dockerd --validate` exists (Docker 23+); None: unknown
    init: str | None = None  # "systemd" | "other" | None (a --root tree: nothing to reload)
    engine_running: bool = False
    engine_unit_state: str = ""  # docker.service's ActiveState as systemctl said it (systemd hosts)
    login_uid: int | None = None  # the user the scripts run as (None: not known, or a --root tree)
    engine_api: bool = False  # the engine's API answered the controller over the connection (no curl)
    # dockerd runs (it answered, or has a PID) while docker.service is not active: started by hand or
    # by another unit, so `systemctl reload docker` cannot reach it.
    engine_elsewhere: bool = False
    # Docker from the snap store is installed: its dockerd reads daemon.json and certs.d under
    # /var/snap/docker/current/, not /etc/docker.
    snap_docker: bool = False
    # What the gather saw of docker.service (the planner does not use it; reconcile refuses on it):
    # masked, systemctl refuses to reload or restart it (stopping it still works).
    # trust-agent's per-host daemon is installed: its status.json (the policy it keeps, its state).
    daemon_status: bytes | None = None
    unit_masked: bool = False
    unit_flags: tuple[str, ...] | None = None  # docker.service's ExecStart flags (None: not read)
    running_flags: tuple[str, ...] = ()  # the running dockerd's own (empty: not read)
    # daemon.json exists but the login could not read it ("permission denied"): ``daemon_json`` is None
    # then, and says nothing of what the file holds.
    daemon_json_unreadable: str | None = None
    # The same for the agent's record, its CA files and the running dockerd's command line, by host path
    # (``/var/lib/trust-agent/docker-state.json``, ``/proc/<pid>/cmdline``): why each could not be read.
    # The record is None then, a CA file's content empty, and the command line not among the flags.
    # certs.d or one of its directories the login could not list is named too: nothing under it is known.
    unreadable_files: Mapping[str, str] = field(default_factory=dict)
    # certs.d directories that are symbolic links on a live host (dockerd reads through
    # them), with their resolved targets; ``cert_owners`` holds the target's owner and mode.
    cert_dir_links: Mapping[str, str] = field(default_factory=dict)
    # Why such a link cannot be trusted (a hop through a directory another user can write in, a link
    # not root's), by registry.
    cert_dir_link_problems: Mapping[str, str] = field(default_factory=dict)
    # Where docker.service has no ExecReload (None: it has one, or its unit was not read): what says so,
    # e.g. "/etc/systemd/system/docker.service.d/x.conf clears it". systemctl then refuses a reload.
    unit_reload_missing: str | None = None
    # Entries of certs.d directories with a name dockerd reads (.crt, .cert, .key) that are no file it can
    # read, by ``"<registry>/<name>"``: "directory", "dangling" (a link to nothing) or "special" (a fifo,
    # a socket). dockerd fails every pull from that registry on them.
    cert_entries_broken: Mapping[str, str] = field(default_factory=dict)
    # certs.d entries that are not directories, by name: "file", "link" (to a file) or "special".
    cert_dir_not_dirs: Mapping[str, str] = field(default_factory=dict)
    # docker.service runs but dockerd took the connection and never answered (frozen, hung): its
    # version came from the binary, its live config was not read.
    engine_silent: bool = False

    @property
    def next_start_flags(self) -> tuple[str, ...]:
        """dockerd's flags as its next start gives them: the unit's, where it has them."""
        return self.dockerd_flags if self.unit_flags is None else self.unit_flags

    @property
    def running_dockerd_flags(self) -> tuple[str, ...]:
        """dockerd's flags as the running process has them, which a reload keeps: its command line
        where read, else the flags as gathered. A flag only the unit's next start gives is not in
        force before a restart."""
        return self.running_flags or self.dockerd_flags

    def flags_after(self, action: str) -> tuple[str, ...]:
        """dockerd's flags once ``action`` ("none", "reload", "restart") has run: a restart starts it
        with the unit's, anything else leaves the running process's."""
        return self.next_start_flags if action == "restart" else self.running_dockerd_flags

    @property
    def daemon_json_file(self) -> str:
        """The file that holds daemon.json's content, and so the one written: the symlink's target where
        ``daemon_json_path`` is a symlink, else ``daemon_json_path`` itself."""
        return self.daemon_json_link or self.daemon_json_path
