"""Run a traffic mix on a deployment: reflectors, bulk, probes, stage counters.

The order is fixed so every kernel sees the same thing: tuning and the
receivers' programs first, the probes' warm-up (every path answers, TCP
flows connect), then bulk (floods, iperf3, busy containers), `settle`
seconds for queues to reach their steady state, the probe schedule, and the
counters around all of it. What comes back is plain data (MixRun) for verdicts and
reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..analysis.records import prober_problem
from ..analysis.regime import Regime, judge
from ..analysis.verdict import RunResults
from ..core.errors import VerdictError
from . import placement
from .bulk import FloodReport, HostFlood, Iperf3Report, parse_iperf3
from .hostdrops import HostDrop, HostDropWatch, lost_at_host
from .mix import Mix, Tuning
from .prober import HostProber, ProbeRun
from .stagewatch import StageWatch, VmStages

if TYPE_CHECKING:
    from ..net.deployment import Deployment


@dataclass
class MixRun:
    """One mix on one kernel: every probe, every bulk report, every stage's counters."""

    mix: Mix
    probes: ProbeRun
    floods: list[FloodReport] = field(default_factory=list)
    iperf3: list[Iperf3Report] = field(default_factory=list)
    stages: dict[str, VmStages] = field(default_factory=dict)
    seconds: float = 0.0
    host_load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    regime: Regime | None = None  # loaded runs only: did the queue stand where PRISM acts (testbed.analysis.regime)
    host_drops: dict[str, int] = field(default_factory=dict)  # what the host dropped (stagewatch.host_drops_between)
    host_drop_timeline: list[HostDrop] = field(default_factory=list)  # when the host dropped (testbed.traffic.hostdrops)

    def lost_at_host(self, flow: str) -> int:
        """Lost probes of flow that the host's own queues took (testbed.traffic.hostdrops), not the guest."""
        return lost_at_host(self.results().records(flow), self.host_drop_timeline)

    def results(self) -> RunResults:
        return self.probes.results()

    @property
    def queued_in_guest(self) -> bool:
        return any(s.queued_in_guest for s in self.stages.values())

    def validity(self) -> str | None:
        """None when the run is what it claims; else why not.

        A loaded run must hold its regime; any run must have heard every reply
        that reached the host (a probe the prober's own socket dropped would
        count as lost by the guest).
        """
        if self.regime is not None and not self.regime.valid:
            return self.regime.why
        return prober_problem(self.probes.receive_drops)


def target_cpus(mix: Mix, vm: str, overlay: str) -> tuple[int, ...]:
    """The CPUs the mix steers a VM's overlay traffic to (RPS on the overlay, else on eth0)."""
    tuning = mix.tuning.get(vm)
    if tuning is None:
        return ()
    return tuning.rps.get(overlay) or tuning.rps.get("eth0") or ()


def regime_of(mix: Mix, stages: dict[str, VmStages], topology) -> Regime | None:
    """Judge the VM that receives the mix's first flood; None unloaded; a load without a flood promises no queue."""
    if not mix.loaded:
        return None
    if not mix.floods:
        return Regime.not_required("no flood in the mix: no standing queue is promised")
    dst = mix.floods[0].dst
    vm, container = next(((vm.name, c) for vm, c in topology.containers() if c.name == dst), (None, None))
    if vm is None or vm not in stages:
        return Regime(required=True, valid=False, why=f"invalid: the flood's receiver ({dst}) was not watched")
    return judge(stages[vm], target_cpus(mix, vm, container.overlay))


def receivers(deployment: Deployment, mix: Mix) -> list[str]:
    """VMs that receive any of the mix's traffic, in topology order."""
    dsts = ({p.dst for p in mix.probes} | {f.dst for f in mix.floods} | {i.dst for i in mix.iperf3}
            | {h.container for h in mix.hogs})
    return [vm.name for vm in deployment.topology.vms if any(c.name in dsts for c in vm.containers)]


def prepare(deployment: Deployment, mix: Mix) -> None:
    """Tuning and the receivers' programs, so loaded and unloaded runs share them.

    Placement (RPS, interrupts, pins) is put in force on every run
    (testbed.traffic.placement); sysctls are set each time; what is costly
    and nothing undoes (ingress rules, starting a program) is done when it
    is missing or differs.
    """
    for vm_name, tuning in mix.tuning.items():
        _tune(deployment, vm_name, tuning)
    found = placement.programs(deployment.topology, mix)
    for program in found:
        if ("program", program.container, program.argv) not in deployment.prepared:
            deployment.container(program.container).spawn(program.command,
                                                          log=f"/tmp/prism-reflector-{program.port}.log")
            deployment.prepared.add(("program", program.container, program.argv))
    placement.pin(deployment, found)


def _tune(deployment: Deployment, vm_name: str, tuning: Tuning) -> None:
    """One VM's placement and sysctls (each run) and ingress rules (when the count differs from what is installed)."""
    placement.steer(deployment, vm_name, tuning)
    vm = deployment.vm(vm_name)
    for key, value in tuning.sysctl.items():
        vm.run(["sysctl", "-q", "-w", f"{key}={value}"], check=True)
    for container, rules in tuning.ingress_rules.items():
        if ("rules", container, rules) not in deployment.prepared:
            install_ingress_rules(deployment, container, rules)  # replaces whatever count was there
            deployment.prepared -= {k for k in deployment.prepared if k[:2] == ("rules", container)}
            deployment.prepared.add(("rules", container, rules))


INGRESS_RULE_PORT = 30000  # the rules match UDP ports from here up, which no flow of a mix uses


U32_TABLE_RULES = 4000  # "cls_u32: Hash table node ID pool exhausted" at the 4096th rule of one table


def ingress_rules_batch(rules: int) -> str:
    """`tc -batch` input: an ingress qdisc on eth0 and `rules` u32 rules, none of which matches a mix's traffic.

    Each packet is compared with every rule before it is let through, as a
    policy agent's per-packet rules are, so the cost is paid in softirq on the
    CPU that receives the container's traffic.
    """
    lines = ["qdisc replace dev eth0 ingress"]
    for family, (protocol, match) in enumerate((("ip", "ip"), ("ipv6", "ip6"))):  # each family pays the same
        # one u32 hash table holds at most U32_TABLE_RULES (its node ids are 12 bits): a prio each
        lines += [f"filter add dev eth0 parent ffff: prio {1 + family * 100 + i // U32_TABLE_RULES} protocol "
                  f"{protocol} u32 match {match} dport {INGRESS_RULE_PORT + i} 0xffff action drop"
                  for i in range(rules)]
    return "\n".join(lines) + "\n"


def install_ingress_rules(deployment: Deployment, container: str, rules: int) -> None:
    """Put the rules on the container's eth0 (from its VM, in its network namespace) and check they are all there."""
    handle = deployment.container(container)
    vm, pid, path = handle.machine, handle.pid(), f"/tmp/ingress-rules-{container}.tc"
    vm.run(f"cat > {path}", input=ingress_rules_batch(rules).encode(), check=True)
    out = vm.run(f"nsenter -t {pid} -n tc qdisc del dev eth0 ingress 2>/dev/null; nsenter -t {pid} -n tc -batch {path}"
                 f" && nsenter -t {pid} -n tc filter show dev eth0 ingress | grep -c '^filter.*key ht'",
                 timeout=300, check=True).stdout.strip()
    if out != str(2 * rules):
        raise VerdictError(f"container {container}: {rules} ingress rules a family asked for, {out or 'none'} "
                           f"installed in all")


def _start_iperf3(deployment: Deployment, mix: Mix, seconds: float) -> None:
    for spec in mix.iperf3:
        dst = deployment.container(spec.dst)
        dst.exec(f"rm -f /tmp/iperf3-{spec.name}*.json", check=True)
        dst.spawn(spec.server_command())
    time.sleep(0.3)
    for spec in mix.iperf3:
        deployment.container(spec.src).exec(f"rm -f /tmp/iperf3-{spec.name}.json", check=True)
        deployment.container(spec.src).spawn(spec.client_command(deployment.container(spec.dst).address, seconds))


def _collect_iperf3(deployment: Deployment, mix: Mix, deadline: float) -> list[Iperf3Report]:
    """Each client's report, once its JSON document is whole (or the deadline passed)."""
    reports = []
    for spec in mix.iperf3:
        src = deployment.container(spec.src)
        text = ""
        while time.monotonic() < deadline:
            text = src.exec(f"cat /tmp/iperf3-{spec.name}.json 2>/dev/null").stdout
            if json_complete(text):
                break
            time.sleep(0.5)
        reports.append(parse_iperf3(spec.name, spec.protocol, text))
    return reports


def json_complete(text: str) -> bool:
    """Whether iperf3 has finished writing its -J document.

    It writes the document in several write()s at exit, and a key such as
    "end" is no sign of the last one: every interval has one. Reading
    between two writes gave a truncated document ("iperf3 wrote no JSON").
    """
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def run_mix(deployment: Deployment, mix: Mix, grace: float = 2.0, hold: Mapping[str, float] | None = None) -> MixRun:
    """Run mix once; raises VerdictError when a probe path never answers.

    hold: a delay line at the sender for some probe flows (HostProber), for a positive control.
    """
    mix.validate(deployment.topology)
    prepare(deployment, mix)
    start = time.monotonic()
    load_before = os.getloadavg()[0]
    bulk_seconds = mix.settle + mix.probe_seconds + grace
    floods = [HostFlood(deployment, spec) for spec in mix.floods]

    def start_load(load: contextlib.ExitStack) -> None:
        """Bulk starts once every probe path answered (warm-up), then settles; the measured window opens."""
        _start_iperf3(deployment, mix, bulk_seconds + 1)
        for hog in mix.hogs:
            load.enter_context(deployment.container(hog.container).running(
                hog.start_command(), stop=hog.stop_command(), log=f"/tmp/hog-{hog.name}.log"))
        for flood in floods:
            load.enter_context(flood)
        time.sleep(mix.settle)
        watch.mark_window()
        window_open.append(True)

    window_open: list[bool] = []
    vms = receivers(deployment, mix)
    taps = [deployment.vm(vm).spec.nics[0].tap for vm in vms]
    with StageWatch(deployment, vms) as watch, HostDropWatch(deployment.fabric.netns, taps) as host_drops:
        with contextlib.ExitStack() as load:  # floods, then hogs, stop as soon as the probes are done
            probe_run = HostProber(deployment, mix.probes, grace=grace, hold=hold).run(before_schedule=lambda: start_load(load))
            if window_open:
                watch.mark_window()
        iperf = _collect_iperf3(deployment, mix, time.monotonic() + bulk_seconds + 15)
    run = MixRun(mix, probe_run, [f.report for f in floods], iperf, watch.result,
                 time.monotonic() - start, (load_before, os.getloadavg()[0]),
                 regime_of(mix, watch.result, deployment.topology), watch.host_drops, host_drops.drops)
    for report in iperf:
        if report.error:
            raise VerdictError(f"mix {mix.name}: iperf3 flow {report.name}: {report.error}")
    return run
