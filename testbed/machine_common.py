"""The part of a machine that does not depend on how its QEMU is started."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import MachineError
from .guest_agent import CommandResult
from .splat import ConsoleWatcher


class MachineCommon:
    """What the QEMU and libvirt machines share: commands, splats, the console across boots.

    They differ in how they start a guest and reach its agent, not in how a
    command runs once it is there. A subclass has `_agent`, `is_running()`,
    `console`, `files` and `name`.
    """

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
