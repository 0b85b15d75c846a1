"""The part of a machine that does not depend on how its QEMU is started."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, Self

from ..core.cmd import CommandResult
from ..core.errors import MachineError
from .splat import ConsoleWatcher


class HostTaps(Protocol):
    """What a machine needs of the host fabric (testbed.net.fabric.Fabric) to give its NICs to the run's bridge.

    A seam, so vm/ does not import net/: the fabric is handed in.
    """

    def adopt_host_tap(self, name: str) -> None: ...

    def release_host_tap(self, name: str) -> None: ...

class MachineCommon(ABC):
    """What the QEMU and libvirt machines share: boot, commands, splats, the console across boots.

    They differ in how they start a guest and reach its agent, not in how a
    command runs once it is there. A backend implements the abstract methods
    below, with these signatures (a unit test compares them), and has
    `_agent`, `console`, `crashes`, `files` and `name`.
    """

    @abstractmethod
    def launch(self) -> None:
        """Start the guest (paused until wait_ready, where the backend can); MachineError names the cause."""

    @abstractmethod
    def wait_ready(self) -> float:
        """Let the guest run and wait for its agent; seconds from launch to its answer."""

    @abstractmethod
    def shutdown(self, timeout: float = 5.0) -> int | None:
        """End the guest and release what it held; idempotent. The emulator's exit status where known."""

    @abstractmethod
    def is_running(self) -> bool:
        """The guest's emulator is alive."""

    @abstractmethod
    def _emulator_died(self) -> str | None:
        """Why the emulator ended during boot, or None if it did not."""

    @abstractmethod
    def how_to_reach(self, agent_free: bool = True) -> str:
        """Where the VM and its logs are, for --keep and `up` (agent_free: nobody holds its agent)."""

    def __enter__(self) -> Self:
        """Launch and wait for the guest; one relaunch if the emulator itself died during boot.

        QEMU 7.2's multi-threaded TCG was seen to segfault while a guest
        probed its PCI bus (about one boot in fifteen, on a loaded host).
        That is the emulator, not the kernel under test: a boot whose QEMU
        died without a kernel panic on the console is tried once more, and
        the death is kept in `crashes` for the run's record.
        """
        for attempt in (1, 2):
            try:
                self.launch()
                self.wait_ready()
                return self
            except MachineError:
                died = self._emulator_died()
                self.shutdown()
                if attempt == 2 or died is None or self._panicked():
                    raise
                self.crashes.append(f"{died} during boot; console kept as {self._keep_console(attempt)}")
                self._before_relaunch()
            except BaseException:
                self.shutdown()
                raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def _before_relaunch(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to undo
        """Undo what the dead boot left that the next launch would trip over."""

    def run(self, command: str | Sequence[str], timeout: float = 30.0, check: bool = False,
            input: bytes | None = None) -> CommandResult:
        """Run a command in the guest; with check, a non-zero exit raises."""
        if self._agent is None or not self.is_running():
            raise MachineError(f"{self.name}: not running; console tail:\n{self.console.tail(20)}")
        try:
            result = self._agent.run(command, timeout=timeout, input=input)
        except MachineError as exc:
            raise MachineError(f"{exc}; console tail:\n{self.console.tail(20)}") from None
        return result.check() if check else result

    def splats(self):
        return self.console.poll()

    def _panicked(self) -> bool:
        return any(s.kind == "panic" for s in self.console.poll())

    def _keep_console(self, attempt: int) -> Path:
        kept = self.files.console.with_name(f"console-crash{attempt}.log")
        if self.files.console.exists():
            self.files.console.replace(kept)
        self.console = ConsoleWatcher(self.files.console)
        return kept
