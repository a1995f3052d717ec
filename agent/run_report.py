"""The report a command writes (``-o FILE``, ``--format``) and what it says of a run that stopped
short: interrupted before any host started, stopped at once by a second interrupt, or refused for bad
input. A report file of an earlier run must never stay behind for CI to read as this run's."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import click

from agent.errors import InputError, ReportError, UsageError
from agent.host_pool import CUT_OFF, NOT_STARTED, EarlyInterrupt, StoppedAtOnce
from agent.hosts.base import Transport

if TYPE_CHECKING:
    from agent.outcome import FleetResult, HostOutcome
    from agent.trust import TrustPolicy

FORMATS = ("text", "json", "markdown", "html", "junit")
SUFFIX_FORMATS = {".json": "json", ".md": "markdown", ".html": "html", ".htm": "html", ".xml": "junit"}
TEXT_SUFFIXES = ("", ".txt", ".text", ".log", ".out")

Mode = Literal["plan", "apply", "rollout", "verify"]
Targets = tuple[Sequence[str], Callable[[str], Transport]]


@dataclasses.dataclass
class Known:
    """What a command has read so far, for the report of a run stopped before any host started."""

    names: Sequence[str] = ()
    policy: TrustPolicy | None = None
    started_at: str = dataclasses.field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    started: float = dataclasses.field(default_factory=time.monotonic)

    def hosts(self, targets: Targets) -> Targets:
        self.names = targets[0]
        return targets

    def interrupted(self, mode: Mode, signum: int) -> FleetResult:
        """Every host known so far not started, under the policy if it was read by then."""
        from agent.outcome import FleetResult, HostOutcome

        why = f"interrupted ({signal.Signals(signum).name}) before any host was started"
        policy = self.policy or unread_policy("the run was interrupted before its source was")
        return FleetResult(
            mode=mode,
            policy=policy,
            outcomes=tuple(HostOutcome(name, "skipped", error=NOT_STARTED) for name in self.names),
            started_at=self.started_at,
            seconds=round(time.monotonic() - self.started, 3),
            stopped=f"{why}: nothing was changed on any host"
            + ("" if self.names else "; the inventory was not read yet"),
            interrupted=True,
        )

    def stopped_at_once(
        self,
        mode: Mode,
        policy: TrustPolicy,
        names: Sequence[str],
        stop: StoppedAtOnce,
        finished: dict[str, HostOutcome],
    ) -> FleetResult:
        """A run a second interrupt stopped at once: each host as it stood (its outcome where it had
        finished, cut off in flight, or not started)."""
        from agent.outcome import FleetResult

        said = dict(stop.hosts)
        return FleetResult(
            mode=mode,
            policy=policy,
            outcomes=tuple(finished.get(name) or as_it_stood(name, said.get(name)) for name in names),
            started_at=self.started_at,
            seconds=round(time.monotonic() - self.started, 3),
            stopped=STOPPED_AT_ONCE,
            interrupted=True,
        )

    def refused(self, mode: Mode, error: InputError) -> FleetResult:
        """The run ended on bad input before any host started: no host is in it, and nothing changed."""
        from agent.outcome import FleetResult

        return FleetResult(
            mode=mode,
            policy=self.policy or unread_policy("bad input ended the run before its source was read"),
            outcomes=(),
            started_at=self.started_at,
            seconds=round(time.monotonic() - self.started, 3),
            stopped=f"bad input, nothing was changed on any host: {error}",
            input_error=str(error),
        )


STOPPED_AT_ONCE = (
    "stopped at once by a second interrupt: a host cut off in flight may be left part way; run the same "
    "command again to finish it"
)


def as_it_stood(name: str, known: str | None) -> HostOutcome:
    """A host the run left without its outcome: not started, cut off in flight, or done (its status
    alone known)."""
    from agent.outcome import HostOutcome, Status

    if known is None or known == NOT_STARTED:
        return HostOutcome(name, "skipped", error=NOT_STARTED)
    if known in get_args(Status):
        return HostOutcome(name, known)  # type: ignore[arg-type]
    # What its apply or roll-back had done by then is not known: no count of files (not 0, as though
    # its files were as they were).
    return HostOutcome(name, "failed", error=CUT_OFF, changes_unknown=True)


def unread_policy(why: str) -> TrustPolicy:
    """The policy of a run interrupted before its source was read: nothing asked, and said so. (Made
    here, not at import: agent.trust brings the sources and cryptography, which load while the first
    connections are set up.)"""
    from agent.trust import TrustPolicy

    return TrustPolicy(
        registries=(),
        storage_endpoint=None,
        storage_scheme=None,
        warnings=(f"the policy was not read: {why}",),
    )


@dataclasses.dataclass
class Report:
    """Where the report goes: each ``-o FILE`` (format from --format or the suffix) or stdout. Without
    ``--diff``, a report file and a text report close with the summary table on stdout; with it, the
    text report (every host's diffs) is what stdout shows."""

    fmt: str
    files: tuple[tuple[str, str], ...]  # each -o FILE, with the format written there
    table: bool
    asked: bool = False  # --format given: stdout is to be that format
    emitted: bool = False  # the run's own report was given

    @classmethod
    def of(cls, fmt: str | None, paths: str | Sequence[str] | None, *, diff: bool) -> Report:
        named = named_reports(paths)
        if fmt and len(named) > 1:
            raise UsageError(
                f"--format {fmt} with {len(named)} report files: a repeated -o takes each file's format "
                "from its suffix (.json, .md, .html, .xml, .txt); drop --format"
            )
        files = tuple((path, fmt or format_of(path)) for path in named)
        chosen = fmt or (files[0][1] if files else "text")
        return cls(chosen, files, table=not diff and (bool(files) or chosen == "text"), asked=fmt is not None)

    @classmethod
    def by_suffix(cls, paths: str | Sequence[str] | None) -> Report:
        """The files among ``paths`` whose suffix names a format, in it, and those of another suffix that
        hold a trust-agent report (an earlier run's, written with --format), in that report's format:
        where the -o and --format given cannot be taken as they are, the refusal still reaches every
        file that CI could be reading. Any other file is not a report, and is left as it is."""
        named = {path: suffix_format(path) or format_held(path) for path in named_reports(paths)}
        return cls("text", tuple((path, fmt) for path, fmt in named.items() if fmt), table=False)

    @property
    def path(self) -> str | None:
        """The first report file, if any was named."""
        return self.files[0][0] if self.files else None

    def load(self) -> None:
        """Import what :meth:`emit` will (rich, jinja2): run in a thread while the hosts run, where the
        controller mostly waits, so the end of the run does not."""
        from agent.reports import preload

        for fmt in dict.fromkeys(fmt for _, fmt in self.files):
            preload(fmt)
        if not self.files and not self.table:
            preload(self.fmt)
        if self.table:
            import agent.reports.summary  # noqa: F401 - imported for its import time

    def emit(self, result: FleetResult, *, said: Sequence[str] = ()) -> None:
        """Show and write the run's report; ``said``: warnings already said on stderr, which the closing
        table and a text report on stdout leave out, as the latter does the TLS checks from here (verify
        and rollout say each on stderr as it is judged). Every report file holds them all."""
        from agent.reports import render

        self.emitted = True

        # What stdout shows first: the hosts have changed, and that is shown even if a file cannot be
        # written.
        if self.table:
            from agent.reports.summary import render as render_summary  # rich: for the table alone

            click.echo(render_summary(result, color=color(), said=said), nl=False)
        else:
            shown = "text" if self.files else self.fmt
            on_stderr = (*said, *result.tls_checks)
            text = render(result, shown, color=shown == "text" and color(), said=on_stderr)  # type: ignore[arg-type]
            click.echo(text, nl=False)
        unwritten = []
        for path, fmt in self.files:
            try:
                write_report(path, result, fmt)
            except OSError as exc:
                unwritten.append(f"cannot write the report {path}: {exc.strerror or exc}")
            else:
                click.echo(f"report: {path} ({fmt})", err=True)
        if unwritten:
            raise ReportError("; ".join(unwritten))

    @contextlib.contextmanager
    def on_early_stop(self, mode: Mode, known: Known) -> Iterator[None]:
        """Where an interrupt or bad input ends the command before any host started, the report asked
        for says so: a report file of an earlier run must not stay behind for CI to read as this run's."""
        try:
            yield
        except EarlyInterrupt as interrupt:
            self.stopped_short(known.interrupted(mode, interrupt.signum))
            raise
        except InputError as error:
            if not self.emitted:
                self.stopped_short(known.refused(mode, error))
            raise

    def stopped_short(self, result: FleetResult) -> None:
        """Write the report of a run stopped short (before its hosts, or at once by a second interrupt):
        each file, and stdout where --format asked for one there (why it stopped was said on stderr, so
        no table). An interrupt meanwhile is acted on once the files are whole."""
        from agent.reports import render

        with interrupts_held():
            if self.asked and not self.files:
                click.echo(render(result, self.fmt), nl=False)  # type: ignore[arg-type]
            for path, fmt in self.files:
                try:
                    write_report(path, result, fmt)
                except OSError as exc:
                    click.echo(
                        f"trust-agent: error: cannot write the report {path}: {exc.strerror or exc}",
                        err=True,
                    )
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # at least no earlier run's report stays
                    continue
                click.echo(f"report: {path} ({fmt})", err=True)


def named_reports(paths: str | Sequence[str] | None) -> tuple[str, ...]:
    """Each report file named once, in the order given (``-o a.json -o a.json`` writes it once)."""
    if paths is None:
        return ()
    return tuple(dict.fromkeys([paths] if isinstance(paths, str) else paths))


def suffix_format(path: str) -> str | None:
    """The format a report file's suffix names, None for a suffix that names none (``.yaml``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (*SUFFIX_FORMATS, *TEXT_SUFFIXES):
        return None
    return SUFFIX_FORMATS.get(suffix, "text")


def format_of(path: str) -> str:
    """The format a report file's suffix names."""
    fmt = suffix_format(path)
    if fmt is None:
        suffix = Path(path).suffix.lower()
        # A name like report.yaml asks for a format there is none of: say so, not write text into it.
        raise UsageError(
            f"-o {path}: no report format is written as {suffix}: name the file .json, .md, .html, "
            f".xml or .txt, or give --format ({', '.join(FORMATS)})"
        )
    return fmt


# How each format's report begins (text: how it ends), as agent.reports writes them: enough to tell an
# earlier run's report from a file that is none, read from its first and last few KiB.
_REPORT_HEADS = (
    ("json", re.compile(r'\{\s*"mode": "(plan|apply|rollout|verify)",')),
    ("junit", re.compile(r'<\?xml [^>]*\?>\s*<testsuite name="trust-agent (plan|apply|rollout|verify)"')),
    ("html", re.compile(r"<!DOCTYPE html>.*?<title>trust-agent (plan|apply|rollout|verify)\b", re.S)),
    ("markdown", re.compile(r"# trust-agent (plan|apply|rollout|verify)\n")),
)
_TEXT_TAIL = re.compile(r"\n?\d+ hosts?(: [^\n]*)?  \((plan|apply|rollout|verify), \d+\.\ds\)\n$")
_SNIFFED = 4096


def format_held(path: str) -> str | None:
    """The format of the trust-agent report ``path`` holds, None where it holds none (or cannot be read):
    a file named ``-o old.yaml`` gets its format from --format alone, so a run that stops before its own
    report can know it from nothing else."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # /dev/stdout, a FIFO: nothing to read back
            return None
        with open(path, "rb") as file:
            head = file.read(_SNIFFED)
            file.seek(max(0, file.seek(0, os.SEEK_END) - _SNIFFED))
            tail = file.read()
    except OSError:
        return None
    text = head.decode("utf-8", "replace")
    for fmt, pattern in _REPORT_HEADS:
        if pattern.match(text):
            return fmt
    return "text" if _TEXT_TAIL.search(tail.decode("utf-8", "replace")) else None


def write_report(path: str, result: FleetResult, fmt: str) -> None:
    from agent.reports import render

    with interrupts_held():  # a file cut off half way would be read as this run's whole report
        # UTF-8 whatever the locale: the HTML says so, and JSON is UTF-8 by definition.
        Path(path).write_text(render(result, fmt), encoding="utf-8")  # type: ignore[arg-type]


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off while a report is written: one that comes meanwhile is raised again
    once the block is done, to the handler that was in place (a second interrupt still ends the run)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers are set, and run, in the main thread only
        return
    heard: list[int] = []
    before: dict[int, Any] = {}
    for held in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(held)
        if handler is None or handler == signal.SIG_IGN:
            continue  # not Python's to hold, or ignored anyway
        before[held] = signal.signal(held, lambda signum, frame: heard.append(signum))
    try:
        yield
    finally:
        for number, kept in before.items():
            signal.signal(number, kept)
        for came in dict.fromkeys(heard):
            signal.raise_signal(came)


def color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ
