"""A traffic mix as data: priority and bulk flows, and the guest tuning they assume.

A mix file (cases/mixes/NAME.toml) names its topology and lists flows:

- probe: scapy-built probes from the host traffic port to a reflector in a
  container, echoed back and timed; class "priority" or "bulk" (a bulk-class
  probe is how bulk's own latency is measured in the same run);
- flood: scapy-templated UDP bulk from the host traffic port;
- iperf3: TCP or UDP bulk between two containers;
- hog: CPU-bound busy loops in a container, pinned to CPUs (a busy host).

The same mix runs unchanged on every kernel; what differs between kernels
(e.g. PRISM's knobs) is derived from the mix (its priority ports and DSCP),
not written into it. `without_bulk()` is the unloaded twin of a loaded mix.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError
from ..core.paths import REPO_ROOT
from ..core.tomlconf import check_keys, read_named, typed
from ..core.tomlconf import table as as_table
from ..net.topology import Topology
from .flows import PROBE_PROTOCOLS, CpuHogSpec, HostFloodSpec, Iperf3Spec, ProbeFlow

MIX_DIR = REPO_ROOT / "cases" / "mixes"
PRIORITY, BULK = "priority", "bulk"
AUTO = "auto"  # a flood rate found per boot by testbed.traffic.calibrate

_TOP = {"name", "topology", "settle", "flow", "tuning", "description"}
_PROBE = {"name", "kind", "class", "dst", "protocol", "ip", "dport", "dscp", "size", "rate", "count", "start"}
_FLOOD = {"name", "kind", "class", "dst", "dport", "dscp", "size", "rate", "flows", "ip"}
_IPERF = {"name", "kind", "class", "src", "dst", "protocol", "rate", "size", "port", "streams", "dscp"}
_HOG = {"name", "kind", "class", "container", "cpus", "loops"}
_TUNING = {"rps", "irq", "sysctl", "reflector-cpus", "sink-cpus", "ingress-rules"}
MAX_INGRESS_RULES = 20000


@dataclass(frozen=True)
class Tuning:
    """Guest settings a mix assumes on one VM, applied after the overlay is up."""

    rps: dict[str, tuple[int, ...]] = field(default_factory=dict)  # overlay or interface -> CPUs
    # guest NIC -> CPUs its queues' interrupts go to. Left alone, virtio-net spreads queue i to
    # CPU i and the host tap picks each flow's queue by hash, so which CPU does a flow's NIC work
    # changes from run to run; pinned, the NIC stage has one place.
    irq: dict[str, tuple[int, ...]] = field(default_factory=dict)
    sysctl: dict[str, str] = field(default_factory=dict)
    # CPUs the VM's reflectors are pinned to; () leaves them to the scheduler. A reflector that
    # migrates sends a flow's replies through two CPUs' backlogs and TX queues, which reorders them.
    reflector_cpus: tuple[int, ...] = ()
    sink_cpus: tuple[int, ...] = ()  # CPUs the VM's flood sinks (bulk receivers) are pinned to
    # container -> how many tc rules that match nothing to put on its eth0's ingress: the per-packet
    # policy cost a network-policy agent adds, paid in softirq on the CPU that receives the traffic
    ingress_rules: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Mix:
    name: str
    topology: str
    probes: tuple[ProbeFlow, ...]
    classes: dict[str, str]  # probe flow name -> priority | bulk
    floods: tuple[HostFloodSpec, ...] = ()
    iperf3: tuple[Iperf3Spec, ...] = ()
    hogs: tuple[CpuHogSpec, ...] = ()
    tuning: dict[str, Tuning] = field(default_factory=dict)
    settle: float = 1.0  # seconds of bulk before the first probe
    description: str = ""
    origin: str = "<python>"

    @property
    def loaded(self) -> bool:
        return bool(self.floods or self.iperf3 or self.hogs)

    @property
    def probe_seconds(self) -> float:
        return max(p.start + p.count / p.rate for p in self.probes)

    def flows_of(self, cls: str) -> tuple[ProbeFlow, ...]:
        return tuple(p for p in self.probes if self.classes[p.name] == cls)

    @property
    def priority_ports(self) -> tuple[int, ...]:
        return tuple(sorted({p.dport for p in self.flows_of(PRIORITY)}))

    @property
    def priority_dscp(self) -> tuple[int, ...]:
        return tuple(sorted({p.dscp for p in self.flows_of(PRIORITY) if p.dscp}))

    @property
    def needs_calibration(self) -> bool:
        """A flood says rate = "auto": the rate must be found on the booted receiver first."""
        return any(f.rate is None for f in self.floods)

    def with_flood_rate(self, rate: float) -> Mix:
        """The mix with its "auto" floods set to rate packets/s in all (split evenly between them)."""
        auto = [f for f in self.floods if f.rate is None]
        if not auto:
            return self
        floods = tuple(dataclasses.replace(f, rate=rate / len(auto)) if f.rate is None else f for f in self.floods)
        return dataclasses.replace(self, floods=floods)

    def without_bulk(self) -> Mix:
        """The unloaded twin: the same probes (bulk-class probes too), no load."""
        return dataclasses.replace(self, name=f"{self.name}-unloaded", floods=(), iperf3=(), hogs=(), settle=0.0)

    def with_priority_flood(self) -> Mix:
        """The mix with its first flood sent to a priority port: every flood packet is classified priority."""
        if not self.floods:
            raise ConfigError(f"{self.origin}: mix {self.name} has no flood to send to a priority port")
        flood = dataclasses.replace(self.floods[0], name="priority-flood", dport=self.priority_ports[0])
        return dataclasses.replace(self, name=f"{self.name}-priority-flood", floods=(flood,))

    def with_tuning(self, vm: str, **changes) -> Mix:
        """The mix with some of one VM's tuning replaced, e.g. with_tuning("server", irq={"eth0": (1,)})."""
        tuning = dataclasses.replace(self.tuning.get(vm, Tuning()), **changes)
        return dataclasses.replace(self, tuning={**self.tuning, vm: tuning})

    def validate(self, topology: Topology) -> Mix:
        """Raise ConfigError naming the first problem on this topology; return self when sound."""
        where = f"{self.origin}: mix {self.name}"
        self._check_flows(where, topology)
        vms = {vm.name: vm for vm in topology.vms}
        for vm_name, tuning in self.tuning.items():
            if vm_name not in vms:
                raise ConfigError(f"{where}: [tuning.{vm_name}]: no vm {vm_name!r} in topology {topology.name}")
            _check_tuning(f"{where}: [tuning.{vm_name}]", tuning, vms[vm_name], {o.name for o in topology.overlays})
        return self

    def _check_flows(self, where: str, topology: Topology) -> None:
        """Names, ids and classes, and that every flow's ends are containers of the topology."""
        containers = {c.name for _, c in topology.containers()}
        names = ([p.name for p in self.probes] + [f.name for f in self.floods] + [i.name for i in self.iperf3]
                 + [h.name for h in self.hogs])
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}: flow name {dupes[0]!r} is used twice")
        if not self.flows_of(PRIORITY):
            raise ConfigError(f"{where}: needs at least one probe flow of class 'priority'")
        ids = [p.flow_id for p in self.probes]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{where}: probe flow ids must be distinct")
        ends = ([(p.name, p.dst) for p in self.probes] + [(f.name, f.dst) for f in self.floods]
                + [(i.name, end) for i in self.iperf3 for end in (i.src, i.dst)])
        for name, end in ends:
            if end not in containers:
                raise ConfigError(f"{where}: flow {name}: no container {end!r} in topology {topology.name}")
        for h in self.hogs:
            vm = next((vm for vm, c in topology.containers() if c.name == h.container), None)
            if vm is None:
                raise ConfigError(f"{where}: flow {h.name}: no container {h.container!r} in topology {topology.name}")
            if not h.cpus or not all(0 <= c < vm.vcpus for c in h.cpus) or not 1 <= h.loops <= 16:
                raise ConfigError(f"{where}: flow {h.name}: cpus {list(h.cpus)} must be below vm {vm.name}'s "
                                  f"{vm.vcpus} vCPUs and loops 1-16")


def _check_tuning(where: str, tuning: Tuning, vm, overlays: set[str]) -> None:
    """One VM's tuning: CPUs it has, devices it has, containers on it."""
    _check_tuning_cpus(where, tuning, vm)
    for device in tuning.rps:
        if device not in overlays and not device.startswith("eth"):
            raise ConfigError(f"{where} rps: {device!r} is neither an overlay "
                              f"({', '.join(sorted(overlays))}) nor a guest ethN interface")
    for device in tuning.irq:
        if not re.fullmatch(r"eth\d+", device):
            raise ConfigError(f"{where} irq: {device!r} is not a guest NIC (ethN)")
    on_vm = {c.name for c in vm.containers}
    for container, rules in tuning.ingress_rules.items():
        if container not in on_vm:
            raise ConfigError(f"{where} ingress-rules: no container {container!r} on vm {vm.name}")
        if not 1 <= rules <= MAX_INGRESS_RULES:
            raise ConfigError(f"{where} ingress-rules {container}: {rules} must be 1-{MAX_INGRESS_RULES}")


def _check_tuning_cpus(where: str, tuning: Tuning, vm) -> None:
    pinned = {f"rps {d}": cpus for d, cpus in tuning.rps.items()}
    pinned |= {f"irq {d}": cpus for d, cpus in tuning.irq.items()}
    if tuning.reflector_cpus:
        pinned["reflector-cpus"] = tuning.reflector_cpus
    if tuning.sink_cpus:
        pinned["sink-cpus"] = tuning.sink_cpus
    for what, cpus in pinned.items():
        bad = [c for c in cpus if not 0 <= c < vm.vcpus]
        if bad or not cpus:
            raise ConfigError(f"{where} {what}: CPUs {list(cpus)} must be "
                              f"non-empty and below the VM's {vm.vcpus} vCPUs")


def _probe(t: dict, where: str, flow_id: int) -> ProbeFlow:
    check_keys(t, _PROBE, where)
    protocol = typed(t, "protocol", str, where, "udp")
    if protocol not in PROBE_PROTOCOLS:
        raise ConfigError(f"{where}: protocol {protocol!r} must be one of {', '.join(PROBE_PROTOCOLS)}")
    try:
        return ProbeFlow(name=typed(t, "name", str, where), dst=typed(t, "dst", str, where), flow_id=flow_id,
                         protocol=protocol, ip=typed(t, "ip", int, where, 4),
                         rate=float(typed(t, "rate", (int, float), where, 200.0)),
                         count=typed(t, "count", int, where, 1000), size=typed(t, "size", int, where, 200),
                         dport=typed(t, "dport", int, where, 7007), dscp=typed(t, "dscp", int, where, 0),
                         start=float(typed(t, "start", (int, float), where, 0.0)))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _flood(t: dict, where: str) -> HostFloodSpec:
    check_keys(t, _FLOOD, where)
    rate = typed(t, "rate", (int, float, str), where)
    if isinstance(rate, str) and rate != AUTO:
        raise ConfigError(f"{where}: rate {rate!r} must be a number of packets/s or \"{AUTO}\"")
    try:
        return HostFloodSpec(name=typed(t, "name", str, where), dst=typed(t, "dst", str, where),
                             rate=None if rate == AUTO else float(rate), size=typed(t, "size", int, where, 1000),
                             dport=typed(t, "dport", int, where, 9), flows=typed(t, "flows", int, where, 4),
                             dscp=typed(t, "dscp", int, where, 0), ip=typed(t, "ip", int, where, 4))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _iperf3(t: dict, where: str) -> Iperf3Spec:
    check_keys(t, _IPERF, where)
    protocol = typed(t, "protocol", str, where, "tcp")
    if protocol not in ("tcp", "udp"):
        raise ConfigError(f"{where}: protocol {protocol!r} must be tcp or udp")
    return Iperf3Spec(name=typed(t, "name", str, where), src=typed(t, "src", str, where), dst=typed(t, "dst", str, where),
                      protocol=protocol, rate=str(typed(t, "rate", (str, int), where, "0")),
                      size=typed(t, "size", int, where, 1000), port=typed(t, "port", int, where, 5201),
                      streams=typed(t, "streams", int, where, 1), dscp=typed(t, "dscp", int, where, 0))


def _hog(t: dict, where: str) -> CpuHogSpec:
    check_keys(t, _HOG, where)
    cpus = typed(t, "cpus", list, where, [1])
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in cpus):
        raise ConfigError(f"{where}: cpus must be a list of CPU numbers")
    return CpuHogSpec(name=typed(t, "name", str, where), container=typed(t, "container", str, where),
                      cpus=tuple(cpus), loops=typed(t, "loops", int, where, 1))


def from_dict(data: dict, origin: str) -> Mix:
    check_keys(data, _TOP, origin)
    probes, classes, floods, iperf, hogs = [], {}, [], [], []
    for i, raw in enumerate(typed(data, "flow", list, origin)):
        where = f"{origin}: [[flow]] #{i + 1}"
        t = as_table(raw, where)
        kind = typed(t, "kind", str, where, "probe")
        cls = typed(t, "class", str, where, PRIORITY if kind == "probe" else BULK)
        if cls not in (PRIORITY, BULK):
            raise ConfigError(f"{where}: class {cls!r} must be priority or bulk")
        if kind == "probe":
            probe = _probe(t, where, flow_id=len(probes) + 1)
            probes.append(probe)
            classes[probe.name] = cls
        elif cls != BULK:
            raise ConfigError(f"{where}: a {kind} flow is bulk; only probe flows can be priority")
        elif kind == "flood":
            floods.append(_flood(t, where))
        elif kind == "iperf3":
            iperf.append(_iperf3(t, where))
        elif kind == "hog":
            hogs.append(_hog(t, where))
        else:
            raise ConfigError(f"{where}: kind {kind!r} must be probe, flood, iperf3 or hog")
    tuning = {vm_name: _tuning(raw, f"{origin}: [tuning.{vm_name}]")
              for vm_name, raw in as_table(data.get("tuning", {}), f"{origin}: [tuning]").items()}
    if not probes:
        raise ConfigError(f"{origin}: a mix needs at least one probe flow")
    return Mix(name=typed(data, "name", str, origin), topology=typed(data, "topology", str, origin),
               probes=tuple(probes), classes=classes, floods=tuple(floods), iperf3=tuple(iperf), hogs=tuple(hogs),
               tuning=tuning,
               settle=float(typed(data, "settle", (int, float), origin, 1.0)),
               description=typed(data, "description", str, origin, ""), origin=origin)


def _tuning(raw: object, where: str) -> Tuning:
    """One [tuning.VM] table."""
    t = check_keys(as_table(raw, where), _TUNING, where)
    rps, irq = _cpu_table(t, "rps", where), _cpu_table(t, "irq", where)
    sysctl = {k: str(v) for k, v in as_table(t.get("sysctl", {}), f"{where} sysctl").items()}
    pins = {key: _cpus(typed(t, key, list, where, []), f"{where}: {key}") for key in ("reflector-cpus", "sink-cpus")}
    rules = as_table(t.get("ingress-rules", {}), f"{where} ingress-rules")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in rules.values()):
        raise ConfigError(f"{where}: ingress-rules must map container names to rule counts")
    return Tuning(rps=rps, irq=irq, sysctl=sysctl, reflector_cpus=pins["reflector-cpus"],
                  sink_cpus=pins["sink-cpus"], ingress_rules=dict(rules))


def _cpus(value: object, what: str) -> tuple[int, ...]:
    """A list of CPU numbers as a tuple; ConfigError naming what otherwise."""
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise ConfigError(f"{what} must be a list of CPU numbers")
    return tuple(value)


def _cpu_table(t: dict, key: str, where: str) -> dict[str, tuple[int, ...]]:
    """A tuning table of device -> list of CPU numbers."""
    return {device: _cpus(cpus, f"{where}: {key} {device}")
            for device, cpus in as_table(t.get(key, {}), f"{where} {key}").items()}


def load(name_or_path: str | Path) -> Mix:
    """A mix by file path, or by name from cases/mixes/ (not yet checked against its topology)."""
    data, path = read_named(name_or_path, MIX_DIR, "mix")
    return from_dict(data, str(path))
