"""Errors the testbed raises on purpose.

Every one carries a single line that names the input and what is wrong with
it, so the CLI and the pytest plugin can print it without a traceback.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path


class TestbedError(Exception):
    """Base for every error that is the user's input or the host, not a bug."""

    __test__ = False  # not a pytest test class, despite the name


class ConfigError(TestbedError):
    """A data file (kernel-config/, images/, a topology) is malformed."""


class CacheError(TestbedError):
    """The cache cannot be written (read-only, full, no permission)."""


class KernelBuildError(TestbedError):
    """A kernel could not be configured, patched or built."""


class ImageBuildError(TestbedError):
    """A guest image could not be built."""


class MachineError(TestbedError):
    """A QEMU process failed to start, or died, or would not answer."""


class CommandError(TestbedError):
    """A command (on the host, in a netns, a guest or a container) failed, or could not be run."""


class CommandTimeout(CommandError):
    """A command did not finish by its deadline."""


class CommandFailed(CommandError):
    """A long tool whose output went to a log (a kernel make, mmdebstrap) exited non-zero.

    Carries the command, its exit status, the log and the log's last lines, so
    the caller can show the tail and name the log in one line.
    """

    def __init__(self, argv: Sequence[str], returncode: int, log: Path, tail: list[str]):
        self.argv = list(argv)
        self.command = shlex.join(self.argv)
        self.returncode = returncode
        self.log = log
        self.tail = tail
        super().__init__(f"{self.argv[0]} {self.outcome}; log: {log}")

    @property
    def outcome(self) -> str:
        """How the command ended, in words: 'exited 2'."""
        return f"exited {self.returncode}"

    @property
    def host_problem(self) -> str | None:
        """The host's own reason when the output names one (a full or read-only disk), else None."""
        for reason in ("No space left on device", "Read-only file system", "Disk quota exceeded"):
            if any(reason in line for line in self.tail):
                return reason
        return None


class StepTimeout(CommandFailed, CommandTimeout):
    """A long tool ran past its deadline and was killed, with everything it had started."""

    def __init__(self, argv: Sequence[str], returncode: int, log: Path, tail: list[str], timeout: float):
        self.timeout = timeout
        super().__init__(argv, returncode, log, tail)

    @property
    def outcome(self) -> str:
        return f"did not finish in {self.timeout:g}s and was killed"


class GuestCommandError(CommandError):
    """A command run in the guest through the guest agent failed."""


class GuestCommandTimeout(GuestCommandError, CommandTimeout):
    """A command run in the guest did not finish in time."""


class FabricError(TestbedError):
    """The host-side network namespace, bridge or taps could not be set up."""


class VerdictError(TestbedError):
    """Probe records or latency samples cannot give a verdict: empty, inconsistent, out of range."""


class RunError(TestbedError):
    """An `up` deployment is missing, ambiguous, failed to come up, or does not answer."""
