"""Where a mix's work runs in the guest: receive steering, NIC interrupts, pinned programs.

A mix states its placement (testbed.traffic.mix.Tuning); every run puts it
in force again and proves the pins hold, rather than trusting what an
earlier run left. Something between two runs can undo it: on Linux 6.1 a
CPU hotplug resets the affinity of every task in the root cpuset to all
online CPUs (user-set affinity is kept only from 6.2, da019032819a "sched:
Enforce user requested affinity"), and virtio-net spreads its interrupts
again when a CPU comes back. A reflector left unpinned migrates between
CPUs, so one flow's replies leave through two backlogs and TX queues: the
testbed would then measure its own reordering, not the kernel's.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import VerdictError
from ..net.topology import vxlan_name
from .mix import Mix, Tuning
from .stagewatch import irq_script, rps_script

if TYPE_CHECKING:
    from ..net.deployment import Deployment

REFLECTOR = "prism-reflector"


@dataclass(frozen=True)
class Program:
    """A receiver-side program a mix needs in a container: a probe reflector or a flood sink."""

    container: str
    port: int
    argv: str  # the command line as /proc shows it, without the pinning
    cpus: tuple[int, ...] = ()  # () leaves it to the scheduler

    @property
    def command(self) -> str:
        """The shell line that starts it, pinned from its first instruction."""
        return f"taskset -c {cpu_list(self.cpus)} {self.argv}" if self.cpus else self.argv


def programs(topology, mix: Mix) -> list[Program]:
    """Every reflector and sink the mix needs, with the CPUs its tuning pins it to; sorted."""
    def cpus(container: str, sink: bool) -> tuple[int, ...]:
        vm = next(vm.name for vm, c in topology.containers() if c.name == container)
        tuning = mix.tuning.get(vm)
        return (tuning.sink_cpus if sink else tuning.reflector_cpus) if tuning else ()

    found = {Program(p.dst, p.dport, f"{REFLECTOR} -u -t -p {p.dport}", cpus(p.dst, False))
             for p in mix.probes if p.protocol in ("udp", "tcp")}
    found |= {Program(f.dst, f.dport, f"{REFLECTOR} -u -s -p {f.dport}", cpus(f.dst, True)) for f in mix.floods}
    return sorted(found, key=lambda p: (p.container, p.port, p.argv))


def cpu_list(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, sorted(cpus)))


def parse_cpu_list(text: str) -> frozenset[int]:
    """The CPUs of a kernel cpu list ("0-2,5"), as /proc/PID/status Cpus_allowed_list gives them."""
    cpus: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def pin_script(found: list[Program]) -> str:
    """Container shell that pins each running program and prints `port pid allowed wanted` per process.

    A program the mix does not pin gets every online CPU back, so a pin from
    an earlier mix does not outlive it. Exits 1 naming a program that is not
    running: a reflector that died would otherwise show up as lost probes.
    """
    lines = ["online=$(cat /sys/devices/system/cpu/online)"]
    for program in found:
        argv, cpus = shlex.quote(program.argv), cpu_list(program.cpus) if program.cpus else "$online"
        lines.append(f"p=$(pgrep -d ' ' -f -x {argv}) || {{ echo {argv}': not running' >&2; exit 1; }}; "
                     f"for i in $p; do taskset -a -p -c {cpus} $i >/dev/null || exit 1; "
                     f"echo {program.port} $i $(awk '/^Cpus_allowed_list/ {{print $2}}' /proc/$i/status) {cpus}; done")
    return "\n".join(lines)


def check_pins(container: str, found: list[Program], output: str) -> None:
    """Raise VerdictError unless every process of every program runs on exactly the CPUs asked for."""
    seen: set[int] = set()
    for line in output.splitlines():
        port, pid, allowed, wanted = line.split()
        seen.add(int(port))
        if parse_cpu_list(allowed) != parse_cpu_list(wanted):
            raise VerdictError(f"container {container}: {REFLECTOR} on port {port} (pid {pid}) runs on CPUs "
                               f"{allowed}, not {wanted} as the mix places it")
    if missing := sorted({p.port for p in found} - seen):
        raise VerdictError(f"container {container}: no {REFLECTOR} process found for port(s) {missing}")


def pin(deployment: Deployment, found: list[Program]) -> None:
    """Pin every program again, one command per container, and check the kernel kept the pins."""
    by_container: dict[str, list[Program]] = defaultdict(list)
    for program in found:
        by_container[program.container].append(program)
    for container, programs_there in by_container.items():
        result = deployment.container(container).exec(pin_script(programs_there), timeout=60)
        if result.exit_code != 0:
            raise VerdictError(f"container {container}: cannot pin its programs: "
                               f"{(result.stderr or result.stdout).strip()}")
        check_pins(container, programs_there, result.stdout)


def steer(deployment: Deployment, vm_name: str, tuning: Tuning) -> None:
    """Receive steering (RPS) and NIC interrupt placement on one VM, as the tuning says."""
    vm = deployment.vm(vm_name)
    for device, cpus in tuning.rps.items():
        name = next((vxlan_name(o.vni) for o in deployment.topology.overlays if o.name == device), device)
        vm.run(rps_script(name, cpus), check=True)
    for device, cpus in tuning.irq.items():
        vm.run(irq_script(device, cpus), check=True)
