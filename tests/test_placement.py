"""A mix's placement is put in force on every run: pins that a hotplug undid come back, or the run fails."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest

from testbed.core.errors import VerdictError
from testbed.net import topology as topology_mod
from testbed.traffic import mix as mix_mod
from testbed.traffic import placement
from testbed.traffic import run as run_mod


def shipped() -> mix_mod.Mix:
    return mix_mod.load("overlay-flood")


def test_cpu_lists_parse_as_the_kernel_writes_them():
    assert placement.parse_cpu_list("0") == {0}
    assert placement.parse_cpu_list("0-2,5\n") == {0, 1, 2, 5}
    assert placement.parse_cpu_list("") == frozenset()


def test_reflectors_and_sinks_are_pinned_as_the_mix_says():
    mix = shipped()
    found = placement.programs(topology_mod.load(mix.topology), mix)
    tuning = mix.tuning["server"]
    reflectors = [p for p in found if " -t " in p.argv]
    sinks = [p for p in found if " -s " in p.argv]
    assert {p.port for p in reflectors} == {p.dport for p in mix.probes}
    assert all(p.cpus == tuning.reflector_cpus and p.container == "s1" for p in reflectors)
    assert [(p.container, p.cpus) for p in sinks] == [("s2", tuning.sink_cpus)]
    assert reflectors[0].command == f"taskset -c 0 {reflectors[0].argv}"
    unpinned = dataclasses.replace(reflectors[0], cpus=())
    assert unpinned.command == unpinned.argv


@pytest.fixture
def sleeper():
    """A process with an argv no other has, as a reflector in a container would be."""
    argv = "sleep 3599.25"
    proc = subprocess.Popen(argv.split())
    yield proc, argv
    proc.kill()
    proc.wait()


def allowed(pid: int) -> str:
    return next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Cpus_allowed_list"))


def pin_here(programs: list[placement.Program]) -> subprocess.CompletedProcess:
    """The pin script run on this host, each program's container standing for this process's PID namespace."""
    namespaces = {p.container: os.getpid() for p in programs}
    return subprocess.run(["sh", "-c", placement.pin_script(programs, namespaces)], capture_output=True, text=True,
                          timeout=30, check=False)


def test_the_pin_script_pins_a_running_program_and_reports_what_the_kernel_kept(sleeper):
    proc, argv = sleeper
    program = placement.Program("c", 7007, argv, (0,))
    done = pin_here([program])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["c", "7007", str(proc.pid), "0", "0"]
    assert allowed(proc.pid) == "0"
    placement.check_pins([program], done.stdout)
    # a mix that does not pin it gives it every online CPU back
    freed = dataclasses.replace(program, cpus=())
    done = pin_here([freed])
    assert done.returncode == 0, done.stderr
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    assert placement.parse_cpu_list(allowed(proc.pid)) == placement.parse_cpu_list(online)
    placement.check_pins([freed], done.stdout)


def test_the_pin_script_finds_programs_only_in_their_containers_pid_namespace(sleeper):
    """The same reflector command line runs in several containers of one VM: each is found by its namespace."""
    proc, argv = sleeper
    elsewhere = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", "echo $$"],
                               capture_output=True, text=True, timeout=30, check=False)
    if elsewhere.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here: {elsewhere.stderr.strip()}")
    with subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "30"]) as other:
        try:
            for _ in range(100):  # until the forked child is in the new namespace
                children = Path(f"/proc/{other.pid}/task/{other.pid}/children").read_text().split()
                if children:
                    break
                time.sleep(0.02)
            program = placement.Program("c", 7007, argv, (0,))
            done = subprocess.run(["sh", "-c", placement.pin_script([program], {"c": int(children[0])})],
                                  capture_output=True, text=True, timeout=30, check=False)
        finally:
            other.kill()
    assert done.returncode == 1 and f"c: {argv}: not running" in done.stderr, (done.stdout, done.stderr)
    assert allowed(proc.pid) != "0" or Path("/sys/devices/system/cpu/online").read_text().strip() == "0"


def test_a_program_that_is_not_running_fails_the_pin_script_by_name():
    program = placement.Program("c", 7007, "sleep 3599.75", (0,))
    done = pin_here([program])
    assert done.returncode == 1
    assert "c: sleep 3599.75: not running" in done.stderr


def test_a_pin_the_kernel_did_not_keep_or_a_missing_process_is_an_error():
    program = placement.Program("s1", 7007, "prism-reflector -u -t -p 7007", (0,))
    with pytest.raises(VerdictError, match=r"container s1: prism-reflector on port 7007 \(pid 312\) runs on CPUs "
                                           r"0-1, not 0"):
        placement.check_pins([program], "s1 7007 312 0-1 0\n")
    with pytest.raises(VerdictError, match=r"container s1: no prism-reflector process found for port\(s\) \[7007\]"):
        placement.check_pins([program], "")
    with pytest.raises(VerdictError, match=r"threads on different CPUs"):
        placement.check_pins([program], "s1 7007 312 mixed 0\n")
    with pytest.raises(VerdictError, match=r"container s1: no prism-reflector"):  # found, but in another container
        placement.check_pins([program], "s2 7007 312 0 0\n")


class Recorder:
    """A deployment that records what prepare asks of it."""

    def __init__(self):
        self.topology = topology_mod.load("two-vm")
        self.prepared: set[tuple] = set()
        self.calls: list[tuple] = []

    def vm(self, name):
        return _Shell(self.calls, name)

    def container(self, name):
        return _Shell(self.calls, name)


@dataclasses.dataclass
class _Shell:
    calls: list
    name: str

    def run(self, command, check=False, timeout=None):
        self.calls.append(("run", self.name, command))

    def spawn(self, command, log=None):
        self.calls.append(("spawn", self.name, command))


def test_every_run_puts_the_placement_back_and_starts_each_program_once(monkeypatch):
    pinned: list[list[placement.Program]] = []
    rules: list[tuple[str, int]] = []
    monkeypatch.setattr(placement, "pin", lambda deployment, found: pinned.append(found))
    monkeypatch.setattr(run_mod, "install_ingress_rules", lambda deployment, c, n: rules.append((c, n)))
    a = shipped()
    server = a.tuning["server"]
    b = dataclasses.replace(a, tuning={"server": dataclasses.replace(server, irq={"eth0": (1,)},
                                                                     ingress_rules={"s2": 10})})
    deployment = Recorder()
    for mix in (a, b, a):
        run_mod.prepare(deployment, mix)
    irq = [c[2] for c in deployment.calls if c[0] == "run" and "smp_affinity_list" in str(c[2])]
    assert len(irq) == 3 and "echo 0 >" in irq[0] and "echo 1 >" in irq[1] and "echo 0 >" in irq[2]
    rps = [c for c in deployment.calls if c[0] == "run" and "rps_cpus" in str(c[2])]
    assert len(rps) == 3
    spawned = [c for c in deployment.calls if c[0] == "spawn"]
    assert len(spawned) == len(placement.programs(deployment.topology, a))
    assert len(pinned) == 3 and pinned[2] == placement.programs(deployment.topology, a)
    shipped_rules = a.tuning["server"].ingress_rules["s2"]
    assert rules == [("s2", shipped_rules), ("s2", 10), ("s2", shipped_rules)]


def test_ingress_rules_past_one_u32_table_go_into_tables_of_their_own():
    """One u32 hash table takes at most 4095 rules ("Hash table node ID pool exhausted" at the 4096th,
    seen installing 8000): each block of U32_TABLE_RULES gets a prio (a table) of its own, per family."""
    from testbed.traffic.run import U32_TABLE_RULES, ingress_rules_batch
    lines = ingress_rules_batch(8000).splitlines()
    assert lines[0] == "qdisc replace dev eth0 ingress" and len(lines) == 1 + 2 * 8000
    prios = [int(line.split(" prio ")[1].split()[0]) for line in lines[1:]]
    assert sorted(set(prios)) == [1, 2, 101, 102]
    assert max(prios.count(p) for p in set(prios)) == U32_TABLE_RULES < 4096
