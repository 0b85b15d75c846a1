"""TCP request/response probes: one connection per flow, one request in flight.

A TCP probe is a real connection from the host's own stack (its VXLAN
endpoint in the fabric namespace) to the container's reflector (-t): the
handshake, ACKs and retransmissions are the kernel's, as for any TCP
client, which scapy on a raw socket could not be without fighting the
host's stack. As in netperf's TCP_RR, a request goes out only after the
previous response arrived; a probe whose time came while the previous one
was still out leaves late. Every slot of the schedule is recorded, timed
from when it was *due*, not from when it could leave: a request that waited
behind a slow one carries that wait in its latency (otherwise a stall
would hide itself, the coordinated omission of closed-loop probers).
Slots that come after the schedule's end (plus a second) are not sent at
all, so a slow path cannot stretch a run; they are recorded as lost and
counted as skipped. The response's time is the kernel's receive timestamp
of its last segment (SO_TIMESTAMPNS on the TCP socket).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..analysis.records import ProbeRecord
from ..core.errors import VerdictError
from ..core.netns import socket_in
from ..net.overlay import host_overlay_address, host_overlay_address6
from . import probe

if TYPE_CHECKING:
    from ..net.deployment import Deployment

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
RESPONSE_TIMEOUT = 10.0  # seconds; past it the connection is given up and the rest counted lost


@dataclass
class TcpRrResult:
    records: list[ProbeRecord] = field(default_factory=list)
    lateness_ns: list[int] = field(default_factory=list)
    error: str | None = None
    skipped: int = 0  # slots past the schedule's end, never sent (recorded as lost)


def connect(deployment: Deployment, flow) -> socket.socket:
    """A connected, warmed-up TCP socket from the host's overlay address to flow's container."""
    t = deployment.topology
    handle = deployment.container(flow.dst)
    overlay = t.overlay(handle.container.overlay)
    if flow.ip == 6:
        family, src, dst = socket.AF_INET6, host_overlay_address6(t, overlay.name), overlay.address6(handle.address)
    else:
        family, src, dst = socket.AF_INET, host_overlay_address(t, overlay.name), handle.address
    sock = socket_in(deployment.fabric.netns, family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Closed with a reset, not a FIN: a graceful close leaves this fixed 4-tuple in TIME_WAIT for
        # 60 s, and the next run's connect() from the same port then fails (EADDRNOTAVAIL)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if flow.dscp:
            level, option = (socket.IPPROTO_IPV6, socket.IPV6_TCLASS) if flow.ip == 6 else (socket.IPPROTO_IP,
                                                                                             socket.IP_TOS)
            sock.setsockopt(level, option, flow.dscp << 2)
        sock.bind((src, flow.source_port))
        sock.settimeout(RESPONSE_TIMEOUT)
        sock.connect((dst, flow.dport))
        _exchange(sock, probe.encode(probe.WARMUP_FLOW, 0, time.time_ns(), flow.size))  # warm-up: the path answers
    except OSError as exc:
        sock.close()
        raise VerdictError(f"probe flow {flow.name}: TCP to {flow.dst} [{dst}]:{flow.dport} failed: "
                           f"{exc.strerror or exc} (is a reflector with -t running there?)") from None
    return sock


def _exchange(sock: socket.socket, payload: bytes) -> tuple[bytes, int | None]:
    """Send one request, read its whole response; (response, kernel timestamp of its last segment)."""
    sock.sendall(payload)
    got, stamp = b"", None
    while len(got) < len(payload):
        data, ancillary, _flags, _addr = sock.recvmsg(len(payload) - len(got), 64)
        if not data:
            raise ConnectionError("the reflector closed the connection")
        got += data
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", raw[:16])
                stamp = sec * 1_000_000_000 + nsec
    return got, stamp


def run_flow(sock: socket.socket, flow, start_ns: int, result: TcpRrResult, stop: threading.Event) -> None:
    """Send flow's requests on its schedule (or late, one at a time), into result."""
    window_end = start_ns + int((flow.start + flow.count / flow.rate + 1.0) * 1e9)
    for seq in range(flow.count):
        due = start_ns + int((flow.start + seq / flow.rate) * 1e9)
        if time.time_ns() > window_end:
            result.skipped += 1
            result.records.append(ProbeRecord(flow.name, seq, due, None, True, True))
            continue
        while (now := time.time_ns()) < due and not stop.is_set():
            time.sleep(min((due - now) / 1e9, 0.05))
        if stop.is_set() or result.error:
            result.records.append(ProbeRecord(flow.name, seq, due, None, True, True))
            continue
        sent = time.time_ns()
        result.lateness_ns.append(sent - due)
        try:
            reply, stamp = _exchange(sock, probe.encode(flow.flow_id, seq, sent, flow.size))
        except (OSError, ConnectionError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.records.append(ProbeRecord(flow.name, seq, due, None, True, True))
            continue
        try:
            got = probe.decode(reply)
            ok = got.flow == flow.flow_id and got.seq == seq
            length_ok, crc_ok = got.length_ok and ok, got.crc_ok and ok
        except VerdictError:
            length_ok, crc_ok = False, False
        received = stamp if stamp is not None and stamp >= sent else time.time_ns()
        result.records.append(ProbeRecord(flow.name, seq, due, received, length_ok, crc_ok))  # timed from its slot
