"""Progress for long steps, and running a tool with its output sent to a log.

A step is a sequence of phases. On a terminal each phase shows a spinner,
its elapsed time and the tool's latest output line; elsewhere (CI, pytest
with capture off) each phase prints one line when it ends. The tool's own
output always goes to a log file, whose tail is shown when it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from .errors import CommandFailed, StepTimeout

__all__ = ["CommandFailed", "Step", "StepTimeout", "console", "print_tail"]

# Off a terminal (a pipe, a CI log) Rich assumes 80 columns and folds a wide table into columns
# of four letters; a log has no width, so tables get as much as they need, up to this.
LOG_WIDTH = 320


def _console() -> Console:
    found = Console(stderr=True, highlight=False)
    if found.is_terminal or "COLUMNS" in os.environ:
        return found
    return Console(stderr=True, highlight=False, width=LOG_WIDTH)


console = _console()


def _fmt(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


class Step:
    """One long step (e.g. 'kernel prism') made of named phases."""

    def __init__(self, title: str):
        self.title = title
        self.started = time.monotonic()
        self._status = None
        self._phase = ""
        self._phase_started = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._phase = name
        self._phase_started = time.monotonic()
        ok = False
        status = console.status(self._line(""), spinner="dots") if console.is_terminal else contextlib.nullcontext()
        with status as live:
            self._status = live
            try:
                yield
                ok = True
            finally:
                self._status = None
                took = _fmt(time.monotonic() - self._phase_started)
                mark = "[green]done[/]" if ok else "[red]failed[/]"
                console.print(f"{self.title}: {name} {mark} in {took}")

    def update(self, detail: str) -> None:
        if self._status is not None:
            self._status.update(self._line(detail))

    def _line(self, detail: str) -> Text:
        took = _fmt(time.monotonic() - self._phase_started)
        text = Text(f"{self.title}: {self._phase} ({took})", style="bold")
        if detail:
            text.append(f"  {detail[:100]}", style="dim")
        return text

    def run(self, argv: Sequence[str], log: Path, *, timeout: float, cwd: Path | None = None,
            env: dict | None = None) -> None:
        """Run argv, appending its output to log; CommandFailed on error, StepTimeout past timeout seconds.

        The tool runs in a session of its own, so the deadline (or an
        interrupt) kills what it started too: make's compilers, mmdebstrap's
        apt and dpkg.
        """
        tail: deque[str] = deque(maxlen=30)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", buffering=1) as out:  # line-buffered: the log is current if we die
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1, start_new_session=True,
            )
            overran = threading.Event()
            deadline = threading.Timer(timeout, lambda: (overran.set(), _kill_session(proc)))
            deadline.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    out.write(line)
                    line = line.rstrip()
                    tail.append(line)
                    self.update(line.strip())
                returncode = proc.wait()
            except BaseException:
                _kill_session(proc)
                proc.wait()
                raise
            finally:
                deadline.cancel()
            if overran.is_set() and returncode < 0:  # killed by the deadline, not finished just before it
                out.write(f"[killed: no end after {timeout:g}s]\n")
                raise StepTimeout(argv, returncode, log, list(tail), timeout)
        if returncode != 0:
            raise CommandFailed(argv, returncode, log, list(tail))


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the session proc leads: the tool and every process it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def print_tail(failure: CommandFailed) -> None:
    """Show the last lines of a failed tool's log, and where the rest is."""
    console.print(f"[red]{' '.join(failure.argv[:3])} … {failure.outcome}; last lines of {failure.log}:[/]")
    for line in failure.tail:
        console.print(f"  {line}", markup=False)
