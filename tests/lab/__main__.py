"""python -m tests.lab up|down|status|run|ssh --dir DIR ..."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tests.lab import network, ssh
from tests.lab.lab import Lab, LabError
from tests.lab.layout import FLAVOUR, STORAGE_MODES
from tests.lab.lifecycle import down, leftovers, up
from tests.lab.rootfs import FLAVOURS


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    own, command = _split(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="bring the lab up (idempotent)")
    p_up.add_argument("--hosts", type=int, default=3)
    p_up.add_argument("--storage", choices=STORAGE_MODES, default="ca")
    p_up.add_argument("--registry-port", type=int, default=443)
    p_up.add_argument(
        "--flavours",
        default=FLAVOUR,
        help=f"comma-separated host flavours, given to hosts in turn ({', '.join(FLAVOURS)}; default {FLAVOUR})",
    )
    sub.add_parser("down", help="remove everything the lab made (safe to repeat)")
    sub.add_parser("status", help="show what runs")
    sub.add_parser("run", help="run `-- CMD...` inside the lab network namespace")
    p_ssh = sub.add_parser("ssh", help="run `-- CMD...` on HOST over SSH")
    p_ssh.add_argument("host")
    for p in sub.choices.values():
        p.add_argument("--dir", required=True, help="the lab's directory")
    args = parser.parse_args(own)

    def log(msg: str) -> None:
        print(f"lab: {msg}", file=sys.stderr, flush=True)

    try:
        if args.action == "up":
            flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
            lab = up(args.dir, args.hosts, args.storage, args.registry_port, log=log, flavours=flavours)
            print(json.dumps(lab.timings))
        elif args.action == "down":
            down(args.dir, log=log)
            left = leftovers(args.dir)
            if left:
                log("left behind: " + ", ".join(left))
                return 1
        elif args.action == "status":
            print(json.dumps(Lab(args.dir).status(), indent=2))
        elif args.action == "run":
            if not command:
                parser.error("run needs -- CMD...")
            lab = Lab(args.dir)
            os.execvp("nsenter", [*network.nsenter(lab.namespace), *command])
        elif args.action == "ssh":
            lab = Lab(args.dir)
            ssh_argv = ssh.argv(lab.namespace, lab.key, lab.known_hosts, lab.host(args.host).address, "")
            # Like ssh itself: the words are joined into one remote command; none means a login shell.
            os.execvp(ssh_argv[0], ssh_argv[:-1] + ([" ".join(command)] if command else []))
    except LabError as exc:
        log(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
