"""testbed.vm.machine_common: one relaunch when the emulator dies during boot, never for a guest's fault.

Both backends boot through MachineCommon.__enter__; a scripted machine
stands in for QEMU here, so each path of the retry runs without a VM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.core.errors import MachineError
from testbed.vm.machine_common import MachineCommon
from testbed.vm.splat import ConsoleWatcher


@dataclass
class Files:
    console: Path


class ScriptedMachine(MachineCommon):
    """Each boot takes the next outcome: "ok", "died" (emulator), "failed" (guest), "panic" or "interrupt"."""

    def __init__(self, tmp_path: Path, outcomes: list[str]):
        self.name = "vm1"
        self.files = Files(tmp_path / "console.log")
        self.console = ConsoleWatcher(self.files.console)
        self.crashes: list[str] = []
        self.outcomes = outcomes
        self.log: list[str] = []
        self._outcome = ""

    def launch(self) -> None:
        self._outcome = self.outcomes.pop(0)
        self.log.append("launch")
        self.files.console.write_text(f"boot {len(self.log)}\n")

    def wait_ready(self) -> float:
        if self._outcome == "panic":
            with open(self.files.console, "a") as f:
                f.write("[    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
        if self._outcome == "interrupt":
            raise KeyboardInterrupt
        if self._outcome != "ok":
            raise MachineError(f"{self.name}: boot {self._outcome}")
        return 1.0

    def _emulator_died(self) -> str | None:
        return "QEMU killed by signal 11" if self._outcome in ("died", "panic") else None

    def _before_relaunch(self) -> None:
        self.log.append("release")

    def shutdown(self, timeout: float = 5.0) -> None:
        self.log.append("shutdown")

    def is_running(self) -> bool:
        return self._outcome == "ok"

    def how_to_reach(self, agent_free: bool = True) -> str:
        return f"{self.name}: scripted"


def test_emulator_death_is_relaunched_once_and_recorded(tmp_path):
    vm = ScriptedMachine(tmp_path, ["died", "ok"])
    with vm as entered:
        assert entered is vm
    assert vm.log == ["launch", "shutdown", "release", "launch", "shutdown"]
    assert len(vm.crashes) == 1 and vm.crashes[0].startswith("QEMU killed by signal 11 during boot")
    kept = tmp_path / "console-crash1.log"
    assert kept.read_text() == "boot 1\n", "the dead boot's console is kept apart from the next one's"


def test_second_emulator_death_raises(tmp_path):
    vm = ScriptedMachine(tmp_path, ["died", "died"])
    with pytest.raises(MachineError, match="boot died"), vm:
        pass
    assert vm.log.count("launch") == 2 and vm.log[-1] == "shutdown"


@pytest.mark.parametrize("outcome", ["failed", "panic"])
def test_guest_fault_is_not_retried(tmp_path, outcome):
    """A guest that fails to boot, or panics (even if QEMU then died), is the kernel's fault: raise at once."""
    vm = ScriptedMachine(tmp_path, [outcome, "ok"])
    with pytest.raises(MachineError), vm:
        pass
    assert vm.log == ["launch", "shutdown"]
    assert vm.crashes == []


def test_interrupt_during_boot_shuts_down_and_propagates(tmp_path):
    vm = ScriptedMachine(tmp_path, ["interrupt"])
    with pytest.raises(KeyboardInterrupt), vm:
        pass
    assert vm.log == ["launch", "shutdown"]
