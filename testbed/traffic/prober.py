"""Priority probes from the host traffic port, timed by the kernel.

Probes are built with scapy once per flow (outer Ether/IPv4/UDP/VXLAN, inner
Ether/IP and UDP to a reflector or an ICMP echo request the container's own
kernel answers; payload from testbed.traffic.probe) and then sent as prepared bytes on
a packet socket, changing only the payload per probe: scapy is far too slow
to build a frame per probe and still keep a schedule. Replies are read from
a second packet socket on the traffic port with the kernel's receive
timestamp (SO_TIMESTAMPNS), not with Python's clock after the fact; the send
time is taken just before the send call, and how late each probe left
against its schedule is recorded too. A UDP reply also carries the
reflector's stamps on the guest's clock (testbed.traffic.probe), which each record
keeps for testbed.analysis.breakdown.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..analysis.records import ProbeRecord
from ..analysis.verdict import RunResults
from ..core.errors import VerdictError
from ..core.netns import sending_socket, socket_in
from ..net.fabric import TRAFFIC_PORT
from ..net.overlay import host_overlay_address, host_overlay_address6
from ..net.topology import VXLAN_PORT
from . import frames, probe, tcp_rr
from .flows import ProbeFlow

if TYPE_CHECKING:
    from ..net.deployment import Deployment

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats: packets queued, packets dropped (and resets both)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SPIN_NS = 300_000  # sleep until this close to a probe's time, then spin
ICMP_HEADER = 8


@dataclass
class ProbeRun:
    """What a probe session saw: one record per probe, and send lateness."""

    records: list[ProbeRecord]
    lateness_ns: dict[str, list[int]] = field(default_factory=dict)
    foreign: int = 0  # frames on the port that were not replies to our probes
    # frames the prober's own receive socket dropped (its buffer full): a probe
    # lost there was lost by the host's measurement, not by the guest's stack
    receive_drops: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # TCP RR slots past the schedule's end, never sent

    def results(self) -> RunResults:
        return RunResults.from_records(self.records)


@dataclass
class Reply:
    """The first reply to one probe (its host receive time and what it decoded to), and how many came."""

    rx_ns: int
    decoded: probe.Probe
    copies: int = 1


def record_of(name: str, seq: int, sent_ns: int, reply: Reply | None) -> ProbeRecord:
    """The record of one probe sent at sent_ns; the guest's stamps are None where the reply had 0."""
    if reply is None:
        return ProbeRecord(name, seq, sent_ns, None, True, True)
    got = reply.decoded
    return ProbeRecord(name, seq, sent_ns, reply.rx_ns, got.length_ok, got.crc_ok, reply.copies - 1,
                       got.guest_rx_ns or None, got.guest_read_ns or None, got.guest_send_ns or None)


def probe_template(deployment: Deployment, flow: ProbeFlow) -> bytes:
    """The whole frame of one probe of flow, with a payload to be replaced."""
    return frames.template(deployment, frames.FrameSpec(dst=flow.dst, sport=flow.source_port, dport=flow.dport,
                                                        size=flow.size, dscp=flow.dscp, protocol=flow.protocol,
                                                        icmp_id=flow.source_port, ip=flow.ip))


def probe_frame(template: bytes, flow: ProbeFlow, seq: int, payload: bytes) -> bytes:
    """template with this probe's payload, and the fields that depend on it.

    IPv4 UDP goes without a checksum (allowed, and what tunnels do); ICMP
    carries the sequence number and a checksum of the payload; over IPv6
    both ICMPv6 and UDP checksums are mandatory and cover a pseudo-header.
    """
    if flow.protocol != "icmp" and flow.ip == 4:
        return template[:-flow.size] + payload
    head = len(template) - flow.size - ICMP_HEADER  # UDP's header is 8 bytes too
    l4 = bytearray(template[head:head + ICMP_HEADER])
    struct.pack_into("!H", l4, 2 if flow.protocol == "icmp" else 6, 0)
    if flow.protocol == "icmp":
        struct.pack_into("!H", l4, 6, seq & 0xFFFF)
    segment = bytes(l4) + payload
    if flow.ip == 6:
        proto = 58 if flow.protocol == "icmp" else 17
        segment_sum = frames.internet_checksum(frames.pseudo_header6(template, head - 40, proto, len(segment)) + segment)
    else:
        segment_sum = frames.internet_checksum(segment)
    struct.pack_into("!H", l4, 2 if flow.protocol == "icmp" else 6, segment_sum or 0xFFFF)
    return template[:head] + bytes(l4) + payload


def parse_reply(frame: bytes) -> bytes | None:
    """The inner payload of a VXLAN/IPv4 frame carrying UDP or an ICMP echo reply, inner IPv4 or IPv6, or None."""
    if len(frame) < 14 + 20 + 8 + 8 + 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    udp = 14 + ihl
    if struct.unpack_from("!H", frame, udp + 2)[0] != VXLAN_PORT:
        return None
    inner = udp + 8 + 8
    l3 = inner + 14
    if frame[inner + 12:inner + 14] == b"\x08\x00" and len(frame) >= l3 + 20:
        end = min(len(frame), l3 + struct.unpack_from("!H", frame, l3 + 2)[0])
        transport, proto, echo_reply = l3 + (frame[l3] & 0x0F) * 4, frame[l3 + 9], (1, 0)
    elif frame[inner + 12:inner + 14] == b"\x86\xdd" and len(frame) >= l3 + 40:
        end = min(len(frame), l3 + 40 + struct.unpack_from("!H", frame, l3 + 4)[0])
        transport, proto, echo_reply = l3 + 40, frame[l3 + 6], (58, 129)
    else:
        return None
    if proto == 17 and end >= transport + 8:
        length = struct.unpack_from("!H", frame, transport + 4)[0]
        return frame[transport + 8:transport + length]
    if (proto, frame[transport] if end > transport else -1) == echo_reply and end >= transport + ICMP_HEADER:
        return frame[transport + ICMP_HEADER:end]
    return None


def reply_socket(netns: str, ifname: str = TRAFFIC_PORT) -> socket.socket:
    """A packet socket on ifname that queues the IPv4 frames arriving there, stamped by the kernel.

    Bound to ETH_P_IP it never sees what leaves the port (outgoing frames
    reach only ETH_P_ALL taps), so the flood sent on the same port costs it
    nothing; what it still drops when its reader falls behind is counted
    (socket_drops) and makes a run's losses the host's.
    """
    rx = socket_in(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        rx.bind((ifname, ETH_P_IP))
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    except BaseException:
        rx.close()
        raise
    socket_drops(rx)  # reset the count: what it dropped before this point is not ours
    return rx


def socket_drops(sock: socket.socket) -> int:
    """Frames a packet socket dropped since it was opened (or last asked): its buffer was full."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return drops


class HostProber:
    """Sends flows of probes through the host's VXLAN endpoint and times the echoes."""

    def __init__(self, deployment: Deployment, flows: Sequence[ProbeFlow], grace: float = 2.0, warmup_timeout: float = 15.0,
                 hold: Mapping[str, float] | None = None):
        """hold: seconds by flow name that each of its probes waits after it is stamped and before it is
        sent: a delay line at the sender, outside the guest, so the flow's measured RTT grows by exactly
        that and the guest sees the same requests, later (an instrument's positive control)."""
        names = [f.name for f in flows]
        ids = [f.flow_id for f in flows]
        if len(set(names)) != len(names) or len(set(ids)) != len(ids):
            raise ValueError("probe flows need distinct names and flow ids")
        hold = dict(hold or {})
        wrong = [n for n, s in hold.items() if n not in names or s < 0 or s > grace]
        if wrong:
            raise ValueError(f"hold {wrong}: only a probe flow of this run, 0 to the grace ({grace} s)")
        if any(f.protocol == "tcp" for f in flows if f.name in hold):
            raise ValueError("hold: a TCP request/response flow is timed from its slot; hold a packet flow")
        self._hold_ns = {f.flow_id: int(hold.get(f.name, 0.0) * 1e9) for f in flows}
        self.deployment = deployment
        self.flows = list(flows)
        self.grace = grace
        self.warmup_timeout = warmup_timeout
        if probe.WARMUP_FLOW in ids:
            raise ValueError(f"flow id {probe.WARMUP_FLOW} is reserved for warm-up probes")
        self._by_id = {f.flow_id: f for f in flows}
        self._warm: set[int] = set()  # flow ids whose path has echoed a warm-up probe

    def _sockets(self) -> tuple[socket.socket, socket.socket, list[socket.socket]]:
        netns = self.deployment.fabric.netns
        tx = sending_socket(netns, TRAFFIC_PORT)
        rx = reply_socket(netns)
        rx.settimeout(0.2)
        # The host's own VXLAN endpoint decapsulates the replies too; a bound
        # socket that is never read takes them, so no ICMP "port unreachable"
        # goes back into the overlay.
        sinks = []
        for flow in (f for f in self.flows if f.protocol == "udp"):
            overlay = self.deployment.container(flow.dst).container.overlay
            if flow.ip == 6:
                sink = socket_in(netns, socket.AF_INET6, socket.SOCK_DGRAM)
                address = host_overlay_address6(self.deployment.topology, overlay)
            else:
                sink = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
                address = host_overlay_address(self.deployment.topology, overlay)
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sink.bind((address, flow.source_port))
            sinks.append(sink)
        return tx, rx, sinks

    def run(self, before_schedule=None) -> ProbeRun:
        """Send every flow on its schedule; return a record for every probe.

        before_schedule, if given, is called once every path has answered a
        warm-up probe and every TCP flow is connected, right before the
        schedule starts: that is where a caller starts its load, so warm-up
        checks the path and not how a loaded path treats a handshake.
        """
        packet_flows = [f for f in self.flows if f.protocol != "tcp"]
        tcp_flows = [f for f in self.flows if f.protocol == "tcp"]
        templates = {f.flow_id: probe_template(self.deployment, f) for f in packet_flows}
        # a held flow is sent its hold later than it is stamped: the schedule moves, the stamps do not
        schedule = sorted((f.start + i / f.rate + self._hold_ns[f.flow_id] / 1e9, f.flow_id, i)
                          for f in packet_flows for i in range(f.count))
        sent: dict[tuple[int, int], int] = {}
        received: dict[tuple[int, int], Reply] = {}
        lateness: dict[str, list[int]] = {f.name: [] for f in self.flows}
        tx, rx, sinks = self._sockets()
        stop = threading.Event()
        foreign = [0]
        receiver = threading.Thread(target=self._receive, args=(rx, stop, received, foreign), name="prober-rx")
        receiver.start()
        tcp_sockets: list[socket.socket] = []
        tcp_results = {f.name: tcp_rr.TcpRrResult() for f in tcp_flows}
        tcp_threads = []
        try:
            self._warm_up(tx, templates, packet_flows)
            tcp_sockets = [tcp_rr.connect(self.deployment, f) for f in tcp_flows]
            if before_schedule is not None:
                before_schedule()
            start_ns = time.time_ns() + 50_000_000
            for flow, sock in zip(tcp_flows, tcp_sockets, strict=True):
                thread = threading.Thread(target=tcp_rr.run_flow, name=f"tcp-rr-{flow.name}",
                                          args=(sock, flow, start_ns, tcp_results[flow.name], stop))
                thread.start()
                tcp_threads.append(thread)
            for offset, flow_id, seq in schedule:
                due = start_ns + int(offset * 1e9)
                while (now := time.time_ns()) < due - SPIN_NS:
                    time.sleep((due - now - SPIN_NS) / 1e9)
                while (now := time.time_ns()) < due:
                    pass
                flow = self._by_id[flow_id]
                template = templates[flow_id]
                stamped = now - self._hold_ns[flow_id]
                payload = probe.encode(flow_id, seq, stamped, flow.size)
                tx.send(probe_frame(template, flow, seq, payload))
                sent[(flow_id, seq)] = stamped
                lateness[flow.name].append(now - due)
            for thread in tcp_threads:
                thread.join()
            time.sleep(self.grace)
        finally:
            stop.set()
            receiver.join()
            receive_drops = socket_drops(rx)
            for thread in tcp_threads:
                thread.join()
            for s in (tx, rx, *sinks, *tcp_sockets):
                s.close()
        records = [record_of(self._by_id[flow_id].name, seq, sent_ns, received.get((flow_id, seq)))
                   for (flow_id, seq), sent_ns in sorted(sent.items())]
        for name, result in tcp_results.items():
            records.extend(result.records)
            lateness[name] = result.lateness_ns
        return ProbeRun(records, lateness, foreign=foreign[0], receive_drops=receive_drops,
                        skipped={n: r.skipped for n, r in tcp_results.items() if r.skipped})

    def _warm_up(self, tx: socket.socket, templates: dict[int, bytes], flows: Sequence[ProbeFlow]) -> None:
        """Probe each flow's path until it echoes: the reflector is up, ARP is resolved.

        Warm-up probes carry a reserved flow id, so they count in no flow.
        """
        deadline = time.monotonic() + self.warmup_timeout
        for flow in flows:
            seq = 0
            while flow.flow_id not in self._warm:
                if time.monotonic() > deadline:
                    target = "ICMP echo" if flow.protocol == "icmp" else f"port {flow.dport}"
                    raise VerdictError(f"probe flow {flow.name}: no echo from {flow.dst} {target} within "
                                       f"{self.warmup_timeout:g}s (is a reflector running there?)")
                payload = probe.encode(probe.WARMUP_FLOW, (flow.flow_id << 16) | (seq & 0xFFFF), time.time_ns(), flow.size)
                tx.send(probe_frame(templates[flow.flow_id], flow, seq, payload))
                seq += 1
                time.sleep(0.05)
        time.sleep(0.2)  # let late warm-up echoes drain before the schedule starts

    def _receive(self, rx: socket.socket, stop: threading.Event, received: dict, foreign: list[int]) -> None:
        while not stop.is_set():
            try:
                frame, ancillary, _flags, address = rx.recvmsg(65536, 64)
            except TimeoutError:
                continue
            stamp = next((struct.unpack("qq", data[:16]) for level, kind, data in ancillary
                          if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
            rx_ns = stamp[0] * 1_000_000_000 + stamp[1] if stamp else time.time_ns()
            payload = parse_reply(frame)
            if payload is None:
                foreign[0] += 1
                continue
            try:
                got = probe.decode(payload)
            except VerdictError:
                foreign[0] += 1
                continue
            key = (got.flow, got.seq)
            if got.flow == probe.WARMUP_FLOW:
                self._warm.add(got.seq >> 16)
            elif got.flow not in self._by_id:
                foreign[0] += 1
            elif key in received:
                received[key].copies += 1
            else:
                received[key] = Reply(rx_ns, got)
