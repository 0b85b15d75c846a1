"""One way to run a command: one result type, one error type, a deadline.

Modelled on kselftest's net/lib/py utils (`cmd`, `bkg`): every command the
testbed runs -- on the host, in one of its network namespaces, in a guest
(`MachineCommon.run`) or in a container (`ContainerHandle.exec`) -- returns a
`CommandResult`, and `.check()` or `check=True` turns a non-zero exit into a
`CommandError` (`GuestCommandError` when it ran in a guest). Every command has
a deadline: a hang is a `CommandTimeout` naming the command, never a stuck
run. A program that must stop when a block ends is a context manager at the
place that owns it (`ContainerHandle.running` in a container, the flood's
`HostFlood` on the host).
"""

from __future__ import annotations

import shlex
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
