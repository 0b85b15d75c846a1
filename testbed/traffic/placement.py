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


def pin_script(found: list[Program], namespaces: dict[str, int]) -> str:
    """VM shell that pins each running program and prints `container port pid allowed wanted` per process.

    Run in the VM's own namespaces, one command for every container there: a
    program is found by its command line among the processes that share the
    PID namespace of its container's first process (namespaces: container ->
    that PID), so two containers running the same reflector stay apart.
    A program the mix does not pin gets every online CPU back, so a pin from
    an earlier mix does not outlive it. Exits 1 naming a program that is not
    running: a reflector that died would otherwise show up as lost probes.
    Every run pins again, so the script starts a program (pgrep once per
    container, taskset only for a process whose threads are not where they
    belong) as rarely as it can: each costs a tenth of a second or more in a
    TCG guest.
    """
    lines = [
        "read -r online < /sys/devices/system/cpu/online",
        # A: the CPUs every thread of process $1 may run on, if they agree; else empty
        "allowed() { A=; for t in /proc/$1/task/*; do while read -r k v; do if [ \"$k\" = Cpus_allowed_list: ]; then"
        " if [ -z \"$A\" ] || [ \"$A\" = \"$v\" ]; then A=$v; else A=; return; fi; break; fi;"
        " done < $t/status; done; }",
    ]
    for container in sorted({p.container for p in found}):
        lines.append(f"procs=$(pgrep --ns {namespaces[container]} --nslist pid -a)")
        for program in (p for p in found if p.container == container):
            argv, cpus = shlex.quote(program.argv), cpu_list(program.cpus) if program.cpus else "$online"
            lines.append(
                f"n=0; while read -r i cmd; do [ \"$cmd\" = {argv} ] || continue; n=$((n+1)); allowed $i;"
                f" [ \"$A\" = \"{cpus}\" ] || taskset -a -p -c {cpus} $i >/dev/null || exit 1; allowed $i;"
                f" echo {container} {program.port} $i \"${{A:-mixed}}\" {cpus}; done <<PRISM_PROCS\n$procs\nPRISM_PROCS\n"
                f"[ $n -gt 0 ] || {{ echo {container}: {argv}': not running' >&2; exit 1; }}")
    return "\n".join(lines)


def check_pins(found: list[Program], output: str) -> None:
    """Raise VerdictError unless every process of every program runs on exactly the CPUs asked for."""
    seen: set[tuple[str, int]] = set()
    for line in output.splitlines():
        container, port, pid, allowed, wanted = line.split()
        seen.add((container, int(port)))
        if allowed == "mixed":
            raise VerdictError(f"container {container}: {REFLECTOR} on port {port} (pid {pid}) has threads on "
                               f"different CPUs after pinning them all to {wanted}")
        if parse_cpu_list(allowed) != parse_cpu_list(wanted):
            raise VerdictError(f"container {container}: {REFLECTOR} on port {port} (pid {pid}) runs on CPUs "
                               f"{allowed}, not {wanted} as the mix places it")
    by_container: dict[str, list[int]] = defaultdict(list)
    for program in found:
        if (program.container, program.port) not in seen:
            by_container[program.container].append(program.port)
    for container, ports in sorted(by_container.items()):
        raise VerdictError(f"container {container}: no {REFLECTOR} process found for port(s) {sorted(ports)}")


def pin(deployment: Deployment, found: list[Program]) -> None:
    """Pin every program again, one command per VM, and check the kernel kept the pins."""
    vm_of = {c.name: vm.name for vm, c in deployment.topology.containers()}
    by_vm: dict[str, list[Program]] = defaultdict(list)
    for program in found:
        by_vm[vm_of[program.container]].append(program)
    for vm_name, programs_there in by_vm.items():
        namespaces = {p.container: deployment.container(p.container).pid() for p in programs_there}
        result = deployment.vm(vm_name).run(pin_script(programs_there, namespaces), timeout=60)
        if result.exit_code != 0:
            raise VerdictError(f"vm {vm_name}: cannot pin its containers' programs: "
                               f"{(result.stderr or result.stdout).strip()}")
        check_pins(programs_there, result.stdout)


def steer(deployment: Deployment, vm_name: str, tuning: Tuning) -> None:
    """Receive steering (RPS) and NIC interrupt placement on one VM, as the tuning says."""
    scripts = [rps_script(next((vxlan_name(o.vni) for o in deployment.topology.overlays if o.name == device), device),
                          cpus) for device, cpus in tuning.rps.items()]
    scripts += [irq_script(device, cpus) for device, cpus in tuning.irq.items()]
    if scripts:  # one guest command: each costs about half a second under TCG
        deployment.vm(vm_name).run("\n".join(["set -e", *scripts]), check=True)
