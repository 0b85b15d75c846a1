"""One way to run a command, one result, one error; and a background program that stops when its block ends.

Modelled on kselftest's net/lib/py utils (`cmd`, `bkg`): every command the
testbed runs -- on the host, in one of its network namespaces, in a guest
(`MachineCommon.run`) or in a container (`ContainerHandle.exec`) -- returns a
`CommandResult`, and `.check()` or `check=True` turns a non-zero exit into a
`CommandError` (`GuestCommandError` when it ran in a guest). Every command has
a deadline: a hang is a `CommandTimeout` naming the command, never a stuck
run. A `Background` program is a context manager: leaving the block stops it,
however the block ends.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CommandError, CommandTimeout


@dataclass(frozen=True)
class CommandResult:
    """What a command did, wherever it ran."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    failure: type[CommandError] = field(default=CommandError, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> CommandResult:
        """self, or the command's failure (its last lines of output) when it exited non-zero."""
        if self.exit_code != 0:
            detail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-3:]
            raise self.failure(f"`{self.command}` exited {self.exit_code}: {' | '.join(detail) or 'no output'}")
        return self


def in_netns(argv: Sequence[str], netns: str | None) -> list[str]:
    """argv as run inside netns (unchanged without one)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(argv: Sequence[str], *, netns: str | None = None, timeout: float = 30.0, check: bool = False,
        input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None) -> CommandResult:
    """Run argv on the host (in netns if given) and wait, at most timeout seconds."""
    full = in_netns(argv, netns)
    shown = shlex.join(argv) + (f" (in {netns})" if netns else "")
    start = time.monotonic()
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False, input=input,
                              env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise CommandTimeout(f"`{shown}` did not finish in {timeout:g}s and was killed") from None
    except FileNotFoundError:
        raise CommandError(f"`{shown}`: {full[0]} is not installed") from None
    result = CommandResult(shown, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    return result.check() if check else result


class Background:
    """A host program that runs for the length of a `with` block.

    It runs in a session of its own, so leaving the block stops the whole
    process group: SIGTERM, then SIGKILL after `grace` seconds. Its output
    goes to `log` (or nowhere): a pipe nobody reads would stall it.
    """

    def __init__(self, argv: Sequence[str], *, netns: str | None = None, log: Path | None = None,
                 grace: float = 5.0):
        self.argv = in_netns(argv, netns)
        self.shown = shlex.join(argv) + (f" (in {netns})" if netns else "")
        self.log, self.grace = log, grace
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Background:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except FileNotFoundError:
            raise CommandError(f"`{self.shown}`: {self.argv[0]} is not installed") from None
        finally:
            if self.log:
                out.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Stop the program's process group if it still runs; its exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
        code = self.proc.poll()
        if code is None:
            raise CommandTimeout(f"`{self.shown}` (pid {self.proc.pid}) survived SIGKILL")
        return code

    def __exit__(self, *exc) -> None:
        self.stop()
