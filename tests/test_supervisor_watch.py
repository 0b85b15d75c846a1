"""The supervisor's watch and its exec errors, on a stand-in deployment (no VM)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed.core.errors import GuestCommandError, RunError
from testbed.net.supervisor import Supervisor
from testbed.vm.splat import Splat


class FakeVm:
    def __init__(self, name: str, splats=(), running: bool = True):
        self.name = name
        self._splats = list(splats)
        self.running = running
        self.files = SimpleNamespace(console=Path(f"/run/x/{name}/console.log"))

    def splats(self):
        return self._splats

    def is_running(self) -> bool:
        return self.running

    def run(self, command, timeout=30.0):
        raise GuestCommandError(f"{self.name}: guest agent connection lost: Broken pipe")


class FakeDeployment:
    def __init__(self, machines):
        self.machines = machines

    def vm(self, name):
        return self.machines[name]

    def container(self, name):
        raise KeyError(f"no container {name!r}")


def test_a_panic_or_an_exit_makes_the_run_degraded_and_leads_the_exec_error():
    panic = Splat("panic", 12, ["[   9.1] Kernel panic - not syncing: sysrq triggered crash"], True)
    vms = {"server": FakeVm("server", [panic]), "client": FakeVm("client", running=False), "ok": FakeVm("ok")}
    seen = []
    sup = Supervisor(FakeDeployment(vms), on_change=seen.append)
    sup.look()
    assert sup.degraded["server"].startswith("panic: Kernel panic - not syncing: sysrq triggered crash")
    assert sup.degraded["client"].startswith("its QEMU exited") and "ok" not in sup.degraded
    assert seen == [sup.degraded]
    with pytest.raises(RunError, match=r"^vm server is down: panic: Kernel panic"):
        sup.dispatch({"op": "exec", "vm": "server", "command": "true"})


def test_exec_into_an_unknown_container_keeps_its_own_error():
    sup = Supervisor(FakeDeployment({"server": FakeVm("server")}))
    with pytest.raises(RunError, match="no container 'nope'"):
        sup.dispatch({"op": "exec", "vm": "server", "container": "nope", "command": "true"})
