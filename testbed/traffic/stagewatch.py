"""Per-stage counters around a loaded run: where packets queued, where they dropped.

Before and after the load, one guest command per receiving VM reads every
counter at once (softnet_stat, `ip -s -j link`, each container's
/proc/PID/net/snmp, /proc/net/prism_stat when the kernel has it), and the
host's view of each VM's tap is read in the fabric namespace. While the load
runs, prism-stagemon (images/src/) samples the softnet backlog's length,
which no counter keeps; `window()` marks the part of the load that is
measured (settled, probes in flight), over which it also reports how often
each CPU's backlog stood above a level (testbed.analysis.regime). The stages, in a
packet's order:

  host tap (tx drops: the virtio ring was full, the queue was outside the
  guest) → virtio NIC (eth0 rx drops) → VXLAN gro_cells (the vxlan device's
  rx drops) → softnet backlog (drops, time squeeze, sampled length) →
  veth → socket (Udp RcvbufErrors/InErrors in the container's namespace);
  and back: the reply's send (Udp SndbufErrors), the host's own backlogs
  and fabric links (host_drops_between).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.regime import STANDING_SHARE, WindowBacklog, level_for
from ..analysis.stages import LinkStats, SoftnetRow, parse_ip_link, parse_snmp, parse_softnet
from ..net.topology import vxlan_name
from .hostdrops import backlog_drops

if TYPE_CHECKING:
    from ..net.deployment import Deployment

STAGEMON = "/tmp/prism-stagemon"
BIN_MS = 250  # the window's time bins: enough to see a queue that comes and goes
_MARK = "=====prism-stage====="
# per container: what its sockets took, dropped on arrival, sent, and failed to send (a reflector's
# reply the stack refused is lost there, not on the wire)
SOCKET_COUNTERS = ("InDatagrams", "RcvbufErrors", "InErrors", "OutDatagrams", "SndbufErrors")


@dataclass(frozen=True)
class VmCounters:
    softnet: list[SoftnetRow]
    links: dict[str, LinkStats]
    snmp: dict[str, dict[str, int]]  # container -> Udp counters
    prism_stat: str | None
    cpu_times: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # cpu -> (softirq, idle, all) ticks


def parse_proc_stat(text: str) -> dict[int, tuple[int, int, int]]:
    """Per CPU, (softirq ticks, idle+iowait ticks, all ticks) from /proc/stat's cpuN lines."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if f and f[0].startswith("cpu") and f[0][3:].isdigit() and len(f) >= 8:
            ticks = [int(x) for x in f[1:]]
            out[int(f[0][3:])] = (ticks[6], ticks[3] + ticks[4], sum(ticks[:8]))  # softirq; idle+iowait; user..steal
    return out


@dataclass(frozen=True)
class Snapshot:
    taps: dict[str, LinkStats]  # vm -> its tap, as the host sees it
    vms: dict[str, VmCounters]
    host_links: dict[str, LinkStats] = field(default_factory=dict)  # every link in the fabric namespace
    host_backlog_dropped: int = 0  # the host's own softnet backlogs, all CPUs


@dataclass(frozen=True)
class BacklogSample:
    cpu: int
    samples: int
    peak: int
    mean: float
    nonempty: int


@dataclass(frozen=True)
class Stagemon:
    """prism-stagemon's output: the whole run per CPU, the measured window per CPU, its time bins."""

    run: list[BacklogSample] = field(default_factory=list)
    window: list[WindowBacklog] = field(default_factory=list)
    bins: list[dict] = field(default_factory=list)  # {"bin", "cpu", "mean", "above", "dropped"} per bin and CPU


def parse_stagemon(text: str) -> Stagemon:
    """prism-stagemon's lines (images/src/prism-stagemon.c); anything else is skipped."""
    out = Stagemon()
    for line in text.splitlines():
        f = line.split()
        try:
            if len(f) == 10 and f[0] == "cpu":
                out.run.append(BacklogSample(int(f[1]), int(f[3]), int(f[5]), float(f[7]), int(f[9])))
            elif len(f) == 19 and f[:2] == ["window", "cpu"]:
                v = dict(zip(f[3::2], f[4::2], strict=True))
                out.window.append(WindowBacklog(int(f[2]), int(v["samples"]), int(v["peak"]), float(v["mean"]),
                                                int(v["above"]), int(v["dropped"]), int(v["squeeze"]),
                                                int(v["processed"]), int(v["usec"])))
            elif len(f) == 12 and f[0] == "bin":
                out.bins.append({"bin": int(f[1]), "cpu": int(f[3]), "mean": float(f[7]), "above": int(f[9]),
                                 "samples": int(f[5]), "dropped": int(f[11])})
        except (ValueError, KeyError):
            continue
    return out


def _delta(after: int, before: int) -> int:
    return after - before


@dataclass
class VmStages:
    """What moved at each stage of one receiving VM during the load."""

    vm: str
    tap_to_guest: int = 0
    tap_dropped: int = 0
    nic_rx: int = 0
    nic_dropped: int = 0
    gro_cells_dropped: dict[str, int] = field(default_factory=dict)
    veth_dropped: dict[str, int] = field(default_factory=dict)
    softnet: dict[str, int] = field(default_factory=dict)
    backlog: list[BacklogSample] = field(default_factory=list)
    window: list[WindowBacklog] = field(default_factory=list)  # per CPU, over the measured window only
    bins: list[dict] = field(default_factory=list)
    level: int = 0  # packets: a backlog sample at or above this counts as queued (regime.level_for)
    sockets: dict[str, dict[str, int]] = field(default_factory=dict)
    prism_stat: dict[str, int] = field(default_factory=dict)
    softirq_share: dict[int, float] = field(default_factory=dict)  # cpu -> share of its time in softirq
    busy_share: dict[int, float] = field(default_factory=dict)  # cpu -> share of its time not idle

    @property
    def peak_backlog(self) -> int:
        return max((b.peak for b in self.backlog), default=0)

    @property
    def guest_drops(self) -> int:
        return (self.nic_dropped + sum(self.gro_cells_dropped.values()) + self.softnet.get("dropped", 0)
                + sum(self.veth_dropped.values()) + sum(s.get("RcvbufErrors", 0) for s in self.sockets.values()))

    @property
    def queued_in_guest(self) -> bool:
        """A queue stood in a guest CPU's backlog through the window (testbed.analysis.regime's test, any CPU)."""
        return any(w.occupancy >= STANDING_SHARE for w in self.window)

    def where(self) -> str:
        top = max(self.window, key=lambda w: w.occupancy, default=None)
        if top:
            backlog = (f"cpu{top.cpu} backlog >= {self.level} in {top.occupancy:.0%} of the window "
                       f"(mean {top.mean:.0f}, peak {top.peak}, {top.dropped} drops)")
        else:
            peak = max(self.backlog, key=lambda b: b.peak, default=None)
            backlog = f"peak backlog {peak.peak} on cpu{peak.cpu} (mean {peak.mean:.0f})" if peak else "backlog not sampled"
        return (f"{self.vm}: {backlog}; drops: tap {self.tap_dropped}, nic {self.nic_dropped}, "
                f"gro_cells {sum(self.gro_cells_dropped.values())}, backlog {self.softnet.get('dropped', 0)}, "
                f"veth {sum(self.veth_dropped.values())}, "
                f"socket {sum(s.get('RcvbufErrors', 0) for s in self.sockets.values())}; "
                f"time_squeeze {self.softnet.get('time_squeeze', 0)}")

    def to_dict(self) -> dict:
        return {"vm": self.vm, "host_tap": {"to_guest": self.tap_to_guest, "dropped": self.tap_dropped},
                "nic": {"rx": self.nic_rx, "dropped": self.nic_dropped}, "gro_cells_dropped": self.gro_cells_dropped,
                "softnet": self.softnet, "backlog": [b.__dict__ for b in self.backlog],
                "veth_dropped": self.veth_dropped, "sockets": self.sockets, "prism_stat": self.prism_stat,
                "window": [w.__dict__ for w in self.window], "bins": self.bins, "level": self.level,
                "softirq_share": self.softirq_share, "busy_share": self.busy_share,
                "peak_backlog": self.peak_backlog, "guest_drops": self.guest_drops,
                "queued_in_guest": self.queued_in_guest, "where": self.where()}


def parse_prism_stat(text: str | None) -> dict[str, int]:
    """Totals over CPUs of /proc/net/prism_stat (a header line, then `cpu v1 v2 …` per CPU)."""
    if not text or not text.strip():
        return {}
    lines = [line.split() for line in text.strip().splitlines()]
    header = lines[0][1:]
    totals = dict.fromkeys(header, 0)
    for row in lines[1:]:
        for name, value in zip(header, row[1:], strict=False):
            totals[name] += int(value)
    return totals


class StageWatch:
    """Counters before and after, and the backlog sampled in between, on the receiving VMs."""

    def __init__(self, deployment: Deployment, vms: list[str], interval_us: int = 5000):
        self.deployment = deployment
        self.vms = vms
        self.interval_us = interval_us
        self._pids = {vm: {c.name: self.deployment.container(c.name).pid()
                           for c in deployment.topology.vm(vm).containers} for vm in vms}
        self.before: Snapshot | None = None
        self.levels: dict[str, int] = {}
        self.result: dict[str, VmStages] = {}
        self.host_drops: dict[str, int] = {}

    def _snapshot(self, lead: dict[str, str] | None = None) -> tuple[Snapshot, dict[str, str]]:
        """Counters on the host and every watched VM, and what each VM's `lead` shell printed first.

        lead rides in the same guest command as the counters (each guest
        command costs about half a second under TCG), ahead of them.
        """
        d = self.deployment
        host = parse_ip_link(d.host_run(["ip", "-s", "-j", "link", "show"]).stdout)
        host_backlog = backlog_drops(Path("/proc/net/softnet_stat").read_text())
        taps = {vm: host[d.vm(vm).spec.nics[0].tap] for vm in self.vms}
        vms, led = {}, {}
        for vm in self.vms:
            pids = self._pids[vm]
            parts = [(lead or {}).get(vm, "true"), "cat /proc/net/softnet_stat", "ip -s -j link show"]
            parts += [f"cat /proc/{pid}/net/snmp" for pid in pids.values()]
            parts.append("cat /proc/stat")
            parts.append("cat /proc/net/prism_stat 2>/dev/null || true")
            script = f"; echo {_MARK}; ".join(f"{{ {part}\n}}" for part in parts)
            out = d.vm(vm).run(script, timeout=30, check=True).stdout.split(_MARK + "\n")
            led[vm], out = out[0], out[1:]
            snmp = {name: parse_snmp(out[2 + i]) for i, name in enumerate(pids)}
            vms[vm] = VmCounters(parse_softnet(out[0]), parse_ip_link(out[1]), snmp, out[-1] or None,
                                 parse_proc_stat(out[-2]))
        return Snapshot(taps, vms, host, host_backlog), led

    def __enter__(self) -> StageWatch:
        self.before, limits = self._snapshot({vm: "cat /proc/sys/net/core/netdev_max_backlog" for vm in self.vms})
        for vm in self.vms:
            self.levels[vm] = level_for(int(limits[vm]))
            self.deployment.vm(vm).run(
                f"(prism-stagemon -i {self.interval_us} -t {self.levels[vm]} -b {BIN_MS} > {STAGEMON}.out 2>&1 &"
                f" echo $! > {STAGEMON}.pid)", check=True)
        return self

    def mark_window(self) -> None:
        """Open, then (called again) close the measured part of the load: the regime is judged over it."""
        for vm in self.vms:
            self.deployment.vm(vm).run(f"read -r p < {STAGEMON}.pid && kill -USR1 $p", check=True)  # builtins only

    def __exit__(self, *exc) -> None:
        stop = (f"read -r p < {STAGEMON}.pid && kill $p && while kill -0 $p 2>/dev/null; do sleep 0.05; done;"
                f" cat {STAGEMON}.out")
        if exc[0] is not None:  # the counters are not wanted, only the monitor gone
            for vm in self.vms:
                self.deployment.vm(vm).run(stop, timeout=30)
            return
        after, out = self._snapshot(dict.fromkeys(self.vms, stop))
        samples = {vm: parse_stagemon(out[vm]) for vm in self.vms}
        self.result = stages_between(self.before, after, samples, self.deployment.topology, self.levels)
        self.host_drops = host_drops_between(self.before, after)


def host_drops_between(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """What the host itself dropped on the way to and from the guests (nonzero entries only).

    `backlog`: the host CPUs' softnet backlogs (host-wide: the fabric's
    veths put every frame to and from the traffic port through them); each
    fabric link by name (rx and tx drops; a tap's tx drops are also each
    VM's `host_tap`). A probe lost here was lost outside every guest.
    """
    out = {"backlog": after.host_backlog_dropped - before.host_backlog_dropped}
    for name, link in after.host_links.items():
        if name in before.host_links:
            b = before.host_links[name]
            out[name] = (link.rx_dropped - b.rx_dropped) + (link.tx_dropped - b.tx_dropped)
    return {k: v for k, v in out.items() if v}


def stages_between(before: Snapshot, after: Snapshot, samples: dict[str, Stagemon], topology,
                   levels: dict[str, int] | None = None) -> dict:
    """Per VM, what moved at each stage between two snapshots."""
    vxlans = {vxlan_name(o.vni) for o in topology.overlays}
    out = {}
    for vm, a in after.vms.items():
        b = before.vms[vm]
        mon = samples.get(vm, Stagemon())
        s = VmStages(vm, backlog=mon.run, window=mon.window, bins=mon.bins, level=(levels or {}).get(vm, 0))
        s.tap_to_guest = _delta(after.taps[vm].tx_packets, before.taps[vm].tx_packets)
        s.tap_dropped = _delta(after.taps[vm].tx_dropped, before.taps[vm].tx_dropped)
        if "eth0" in a.links:
            s.nic_rx = _delta(a.links["eth0"].rx_packets, b.links["eth0"].rx_packets)
            s.nic_dropped = _delta(a.links["eth0"].rx_dropped, b.links["eth0"].rx_dropped)
        vxlan_dropped, veth_tx_dropped = _link_drops(a, b, vxlans, s.veth_dropped)
        totals = _softnet_totals(a.softnet, b.softnet)
        s.softnet = totals
        s.gro_cells_dropped = gro_cells_drops(vxlan_dropped, totals["dropped"], veth_tx_dropped)
        for name, counters in a.snmp.items():
            prev = b.snmp.get(name, {})
            s.sockets[name] = {k: counters[k] - prev.get(k, 0) for k in SOCKET_COUNTERS
                               if k in counters}
        s.softirq_share, s.busy_share = _cpu_shares(a.cpu_times, b.cpu_times)
        pa, pb = parse_prism_stat(a.prism_stat), parse_prism_stat(b.prism_stat)
        s.prism_stat = {k: v - pb.get(k, 0) for k, v in pa.items()}
        out[vm] = s
    return out


def _link_drops(a: VmCounters, b: VmCounters, vxlans: set[str], veth_dropped: dict[str, int]) -> tuple[dict[str, int], int]:
    """The VXLAN devices' rx drops, and the veths' (filled into veth_dropped, rx + tx; their tx total returned)."""
    vxlan_dropped: dict[str, int] = {}
    veth_tx_dropped = 0
    for name, link in a.links.items():
        if name not in b.links:
            continue
        dropped = _delta(link.rx_dropped, b.links[name].rx_dropped)
        if name in vxlans:
            vxlan_dropped[name] = dropped
        elif name.startswith("v-"):
            tx_dropped = _delta(link.tx_dropped, b.links[name].tx_dropped)
            veth_tx_dropped += tx_dropped
            veth_dropped[name] = dropped + tx_dropped
    return vxlan_dropped, veth_tx_dropped


def _softnet_totals(after: list[SoftnetRow], before: list[SoftnetRow]) -> dict[str, int]:
    before_rows = {r.cpu: r for r in before}
    totals = dict.fromkeys(("processed", "dropped", "time_squeeze", "received_rps", "flow_limit"), 0)
    for row in after:
        prev = before_rows.get(row.cpu)
        for key in totals:
            totals[key] += getattr(row, key) - (getattr(prev, key) if prev else 0)
    return totals


def _cpu_shares(after: dict[int, tuple[int, int, int]], before: dict[int, tuple[int, int, int]]
                ) -> tuple[dict[int, float], dict[int, float]]:
    """Per CPU, the share of its time in softirq and not idle."""
    softirq, busy = {}, {}
    for cpu, (soft, idle, total) in after.items():
        soft0, idle0, total0 = before.get(cpu, (0, 0, 0))
        if total > total0:
            softirq[cpu] = round((soft - soft0) / (total - total0), 3)
            busy[cpu] = round(1 - (idle - idle0) / (total - total0), 3)
    return softirq, busy


def gro_cells_drops(vxlan_rx_dropped: dict[str, int], backlog_dropped: int, veth_tx_dropped: int) -> dict[str, int]:
    """What the VXLAN devices' gro_cells queues dropped, apart from the backlog's drops charged to them.

    A VXLAN device's rx_dropped counts its gro_cells overflows, and also
    every packet that RPS then failed to put in a full backlog:
    enqueue_to_backlog() charges its drop to skb->dev, which is the VXLAN
    device on that hop (net/core/dev.c, 6.1). The backlog's other hop, a
    veth's netif_rx(), is charged to the veth (its tx_dropped). So the
    backlog drops less the veths' are the VXLAN hop's, and the rest of the
    device's drops are gro_cells'. Without this, a full backlog on the RPS
    CPU reads as a NIC CPU that cannot keep up.
    """
    first_hop = max(0, backlog_dropped - veth_tx_dropped)
    out = {}
    for name, dropped in sorted(vxlan_rx_dropped.items()):
        charged = min(dropped, first_hop)
        first_hop -= charged
        out[name] = dropped - charged
    return out


def rps_script(device: str, cpus: tuple[int, ...]) -> str:
    """Guest shell that steers a device's receive processing to cpus (RPS), on every rx queue."""
    mask = format(sum(1 << c for c in cpus), "x")
    return (f"for q in /sys/class/net/{shlex.quote(device)}/queues/rx-*; do echo {mask} > $q/rps_cpus; done;"
            f" cat /sys/class/net/{shlex.quote(device)}/queues/rx-0/rps_cpus")


def irq_script(device: str, cpus: tuple[int, ...]) -> str:
    """Guest shell that routes every queue interrupt of a virtio NIC to cpus; fails if it finds none."""
    dev, cpu_list = shlex.quote(device), ",".join(map(str, cpus))
    return (f"v=$(basename \"$(readlink /sys/class/net/{dev}/device)\") || exit 1; n=0;"
            f" for i in $(awk -F: -v v=\"$v\" '$0 ~ \" \"v\"-(input|output)\\\\.\" {{gsub(/ /, \"\", $1); print $1}}'"
            f" /proc/interrupts); do echo {cpu_list} > /proc/irq/$i/smp_affinity_list || exit 1; n=$((n+1)); done;"
            f" [ $n -gt 0 ] || {{ echo \"{dev} ($v): no queue interrupts in /proc/interrupts\" >&2; exit 1; }};"
            f" echo \"{dev}: $n queue interrupts -> CPUs {cpu_list}\"")
