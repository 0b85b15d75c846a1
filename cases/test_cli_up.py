"""`prism-testbed up` → exec and shell in a container → `down`, through the CLI
as a user runs it; nothing of the run is left afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from leftovers import netns_names, pids_naming

from testbed.net.fabric import NETNS_PREFIX, runtime_dir

pytestmark = pytest.mark.vm


def cli(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "testbed.cli", *args]
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)


def test_up_exec_shell_down_leaves_nothing(kernel, request):
    accel = request.config.getoption("accel")
    selector = kernel.variant if kernel.variant in ("vanilla", "prism") else str(kernel.bzimage)
    up = cli("up", "two-vm", "--kernel", selector, "--accel", accel, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    run_id = re.search(r"\brun ([0-9a-f]+)\b", up.stdout).group(1)
    run_dir = runtime_dir(run_id)
    try:
        state = json.loads((run_dir / "up.json").read_text())
        assert state["vms"] == {"client": ["c1", "c2"], "server": ["s1", "s2"]}
        assert f"{NETNS_PREFIX}{run_id}" in netns_names()
        assert len(pids_naming(f"{run_dir}/")) == 2, "one QEMU per VM"
        # the supervisor, not this short-lived command, owns the run: the reaper spares it
        owner_pid = int((run_dir / "owner").read_text().split()[0])
        assert owner_pid == state["pid"] != os.getpid()

        # one command in a container, through the supervisor's guest agent
        out = cli("exec", "--run", run_id, "client", "c1", "--", "hostname; ping -c 1 -W 5 10.42.0.21")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.splitlines()[0] == "c1" and " 0% packet loss" in out.stdout
        assert cli("exec", "--run", run_id, "client", "c1", "--", "exit 7").returncode == 7
        wrong = cli("exec", "--run", run_id, "client", "s1", "--", "true")
        assert wrong.returncode == 2 and "it runs on vm server" in wrong.stderr

        # the interactive path, driven by a pipe: a real shell inside the container
        shell = cli("shell", "--run", run_id, "server", "s2", input="hostname\ncat /proc/1/comm\n", timeout=120)
        assert shell.returncode == 0, shell.stdout + shell.stderr
        lines = [line.strip() for line in shell.stdout.splitlines()]
        assert "s2" in lines, shell.stdout  # the container's hostname
        assert "sleep" in lines, shell.stdout  # its own PID 1: the topology's `sleep infinity`
    finally:
        down = cli("down", run_id, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"{NETNS_PREFIX}{run_id}" not in netns_names()
    assert not pids_naming(f"{run_dir}/"), "a QEMU of the run is still running"
    assert not run_dir.exists()
    assert not pids_naming(f'"run_id": "{run_id}"'), "the supervisor is still running"


def test_a_guest_that_dies_under_up_marks_the_run_degraded(kernel, request):
    """A VM that panics: status says so with the panic line, exec leads with it, no zombie QEMU, down works.

    Also the CLI's --append: its argument reaches every VM's kernel command line.
    """
    accel = request.config.getoption("accel")
    selector = kernel.variant if kernel.variant in ("vanilla", "prism") else str(kernel.bzimage)
    up = cli("up", "two-vm", "--kernel", selector, "--accel", accel, "--append", "sysrq_always_enabled",
             timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    run_id = re.search(r"\brun ([0-9a-f]+)\b", up.stdout).group(1)
    run_dir = runtime_dir(run_id)
    try:
        cmdline = cli("exec", "--run", run_id, "client", "--", "cat /proc/cmdline")
        assert "sysrq_always_enabled" in cmdline.stdout.split(), cmdline.stdout + cmdline.stderr
        cli("exec", "--run", run_id, "--timeout", "10", "server", "--", "echo c > /proc/sysrq-trigger")
        status = None
        for _ in range(30):  # the supervisor looks once a second
            status = cli("status")
            if "degraded" in status.stdout + status.stderr:
                break
            time.sleep(1)
        shown = status.stdout + status.stderr
        assert f"run {run_id} degraded" in shown and "vm server" in shown and "sysrq" in shown.lower(), shown
        state = json.loads((run_dir / "up.json").read_text())
        assert set(state["degraded"]) == {"server"}, state
        after = cli("exec", "--run", run_id, "server", "--", "true")
        assert after.returncode == 2 and "vm server is down: panic" in after.stderr, after.stderr
        assert cli("exec", "--run", run_id, "client", "--", "true").returncode == 0, "the other VM goes on"
        zombies = subprocess.run(["ps", "-o", "stat=,pid=,comm=", "--ppid", str(state["pid"])],
                                 capture_output=True, text=True, check=False).stdout
        assert not [line for line in zombies.splitlines() if line.strip().startswith("Z")], zombies
    finally:
        down = cli("down", run_id, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not run_dir.exists()
