"""What a mix is made of: probe flows, host floods, iperf3 flows and CPU hogs, as plain data.

Specs only, with what they check and the commands they stand for; the
engines that run them (testbed.traffic.prober, testbed.traffic.bulk) build
frames with scapy, which this module does not load, so reading a mix stays
cheap (`import testbed.traffic.mix` imports no scapy).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from . import probe

PROBE_PROTOCOLS = ("udp", "icmp", "tcp")


@dataclass(frozen=True)
class ProbeFlow:
    """A stream of probes from the host to a container's reflector."""

    name: str
    dst: str  # container name
    flow_id: int
    rate: float = 200.0  # probes per second
    count: int = 1000
    size: int = 200  # payload bytes
    dport: int = 7007
    sport: int | None = None  # default 40000 + flow_id
    dscp: int = 0
    start: float = 0.0  # seconds after the session starts
    # udp (to a reflector), icmp (echo, answered by the container's kernel), or tcp
    # (request/response over one connection to a reflector, testbed.traffic.tcp_rr)
    protocol: str = "udp"
    ip: int = 4  # inner IP version: 4 or 6

    def __post_init__(self) -> None:
        if self.protocol not in PROBE_PROTOCOLS:
            raise ValueError(f"flow {self.name}: protocol {self.protocol!r} must be one of {', '.join(PROBE_PROTOCOLS)}")
        if self.ip not in (4, 6):
            raise ValueError(f"flow {self.name}: ip {self.ip} must be 4 or 6")
        if not probe.MIN_SIZE <= self.size <= 1400:
            raise ValueError(f"flow {self.name}: size {self.size} must be {probe.MIN_SIZE}-1400 bytes")
        if not 0 < self.rate <= 20_000:
            raise ValueError(f"flow {self.name}: rate {self.rate} must be in (0, 20000] probes/s")
        if self.count <= 0 or not 0 <= self.dscp < 64:
            raise ValueError(f"flow {self.name}: count must be positive and dscp 0-63")

    @property
    def source_port(self) -> int:
        return self.sport if self.sport is not None else 40000 + self.flow_id


@dataclass(frozen=True)
class HostFloodSpec:
    """UDP bulk from the host traffic port into a container, through the VXLAN."""

    name: str
    dst: str
    # packets per second, all inner flows together; None is "auto": the rate testbed.traffic.calibrate
    # finds on the booted receiver, since a fixed rate loads a slow host and not a fast one
    rate: float | None
    size: int = 1000  # inner UDP payload bytes
    dport: int = 9
    flows: int = 4  # distinct inner source ports (RSS spread)
    dscp: int = 0
    ip: int = 4  # the inner packets' IP version

    def __post_init__(self) -> None:
        if self.ip not in (4, 6):
            raise ValueError(f"flood {self.name}: ip {self.ip} must be 4 or 6")
        rate_ok = self.rate is None or 0 < self.rate <= 1_000_000
        if not rate_ok or not 1 <= self.flows <= 1024 or not 0 < self.size <= 1400:
            raise ValueError(f"flood {self.name}: rate must be 'auto' or in (0, 1e6] pps, flows 1-1024, "
                             f"size 1-1400 bytes")


@dataclass(frozen=True)
class Iperf3Spec:
    """iperf3 from one container to another: TCP stream or paced UDP."""

    name: str
    src: str
    dst: str
    protocol: str = "tcp"
    rate: str = "0"  # iperf3 -b; "0" is unlimited
    size: int = 1000  # UDP datagram / TCP write size
    port: int = 5201
    streams: int = 1
    dscp: int = 0

    def server_command(self) -> str:
        return f"iperf3 -s -1 -p {self.port} -J --logfile /tmp/iperf3-{self.name}-server.json"

    def client_command(self, address: str, seconds: float) -> str:
        args = ["iperf3", "-c", address, "-p", str(self.port), "-t", f"{seconds:g}", "-J", "-l", str(self.size),
                "-P", str(self.streams), "-b", self.rate, "--tos", str(self.dscp << 2),
                "--logfile", f"/tmp/iperf3-{self.name}.json"]
        if self.protocol == "udp":
            args.append("-u")
        return " ".join(shlex.quote(a) for a in args)


@dataclass(frozen=True)
class CpuHogSpec:
    """CPU-bound work in a container: the busy host PRISM's paper targets.

    Busy loops pinned to cpus compete with the softirq work there once the
    kernel defers it to ksoftirqd, so the receiver's capacity drops and a
    queue builds in its backlog, as on a highly utilised container host.
    """

    name: str
    container: str
    cpus: tuple[int, ...] = (1,)
    loops: int = 1

    def start_command(self) -> str:
        cpus = ",".join(map(str, self.cpus))
        loop = f"taskset -c {cpus} sh -c 'while :; do :; done' & p=\\\"\\$p \\$!\\\";"
        return f"sh -c \"p=; {' '.join([loop] * self.loops)} echo \\$p > /tmp/hog-{self.name}.pids; wait\""

    def stop_command(self) -> str:
        return f"kill $(cat /tmp/hog-{self.name}.pids) 2>/dev/null; rm -f /tmp/hog-{self.name}.pids"
