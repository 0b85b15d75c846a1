"""The part of a machine that does not depend on how its QEMU is started."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

from .errors import MachineError
from .guest_agent import CommandResult
from .splat import ConsoleWatcher


class MachineCommon:
    """What the QEMU and libvirt machines share: boot, commands, splats, the console across boots.

    They differ in how they start a guest and reach its agent, not in how a
    command runs once it is there. A subclass has `_agent`, `is_running()`,
    `launch()`, `wait_ready()`, `shutdown()`, `_emulator_died()`, `console`,
    `crashes`, `files` and `name`.
    """

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

    def _before_relaunch(self) -> None:
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
