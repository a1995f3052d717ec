"""The per-host daemon: keep this host converged on the registry's trust, locally, with no SSH.

Each cycle polls the source when it is due, keeps the last good policy on disk, and reconciles the
host against it with the same engine as a rollout (``agent.engine.reconcile``). A fault (source
unreachable, a 5xx, a document that does not parse) never revokes trust: the host keeps the last good
policy and the source is retried with exponential back-off. Only a valid new document changes what
the host trusts.

Modules, one job each: ``watch`` (read the source), ``lastgood`` (the policy kept on disk),
``loop`` (cycles and scheduling), ``status`` (what the daemon knows, as values), ``report`` (status
file and Prometheus metrics), ``timing`` (durations, back-off, jitter), ``notify`` (systemd
sd_notify), ``logs`` (JSON lines), ``lock`` (one daemon per state directory), ``files`` (atomic
writes), ``config`` (``--config FILE``), ``unit`` (the systemd unit), ``install`` (``daemon install``/
``uninstall`` over SSH: per host and for a fleet), ``bundle`` (the files it puts on every host),
``host_scripts`` (the shell it runs there), ``wheelhouse`` (the wheels it ships), ``cli`` (the ``trust-agent daemon`` commands).
"""
