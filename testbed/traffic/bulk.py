"""Bulk load: scapy-templated floods from the host, iperf3 between containers.

A flood from the host traffic port is many copies of one scapy-built frame
per inner flow, sent in batches with sendmmsg(2) on a packet socket: Python
pays one call per batch, not per packet, so the offered rate holds at tens
of thousands of packets per second. Several inner flows (distinct source
ports) spread the load over the receiver's queues the way distinct
connections would.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.netns import sending_socket
from ..net.fabric import TRAFFIC_PORT
from . import frames
from .flows import HostFloodSpec

if TYPE_CHECKING:
    from ..net.deployment import Deployment

BATCH = 32
_libc = ctypes.CDLL(None, use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


class FrameBatch:
    """A fixed set of frames, prepared once, sent with one sendmmsg call."""

    def __init__(self, frames_: list[bytes]):
        self._buffers = [ctypes.create_string_buffer(f, len(f)) for f in frames_]
        self._iovs = (_Iovec * len(frames_))()
        self._msgs = (_Mmsghdr * len(frames_))()
        for i, buf in enumerate(self._buffers):
            self._iovs[i].base = ctypes.addressof(buf)
            self._iovs[i].len = len(frames_[i])
            self._msgs[i].hdr.iov = ctypes.pointer(self._iovs[i])
            self._msgs[i].hdr.iovlen = 1
        self.size = len(frames_)

    def send(self, sock: socket.socket) -> int:
        """Frames the kernel took (a full queue takes fewer; that is the load's own drop)."""
        n = _libc.sendmmsg(sock.fileno(), self._msgs, self.size, 0)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        return n


@dataclass
class FloodReport:
    """What a flood offered; achieved_pps is what the host's socket accepted."""

    name: str
    target_pps: float
    sent: int = 0
    refused: int = 0  # frames the host's own queue refused (ENOBUFS)
    seconds: float = 0.0
    late_batches: int = 0  # batches that left more than one batch interval late

    @property
    def achieved_pps(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "target_pps": self.target_pps, "sent": self.sent, "refused": self.refused,
                "seconds": round(self.seconds, 3), "achieved_pps": round(self.achieved_pps, 1),
                "late_batches": self.late_batches}


class HostFlood:
    """Runs a flood in a thread between __enter__ and __exit__."""

    def __init__(self, deployment: Deployment, spec: HostFloodSpec):
        if spec.rate is None:
            raise ValueError(f"flood {spec.name}: rate is 'auto': calibrate the mix first (testbed.traffic.calibrate)")
        self.spec = spec
        templates = [frames.template(deployment, frames.FrameSpec(dst=spec.dst, sport=20000 + i, dport=spec.dport,
                                                                  size=spec.size, dscp=spec.dscp, ip=spec.ip))
                     for i in range(spec.flows)]
        if spec.ip == 6:
            templates = [frames.with_udp6_checksum(t) for t in templates]
        self._batch = FrameBatch([templates[i % len(templates)] for i in range(max(BATCH, len(templates)))])
        self._netns = deployment.fabric.netns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.report = FloodReport(spec.name, spec.rate)

    def __enter__(self) -> HostFlood:
        self._sock = sending_socket(self._netns, TRAFFIC_PORT)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self._thread = threading.Thread(target=self._run, name=f"flood-{self.spec.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sock.close()
        if self._error and not exc[0]:
            raise self._error

    def _run(self) -> None:
        interval = self._batch.size / self.spec.rate
        start = time.monotonic()
        batches = 0
        try:
            while not self._stop.is_set():
                due = start + batches * interval
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                elif now - due > interval:
                    self.report.late_batches += 1
                took = self._batch.send(self._sock)
                self.report.sent += took
                self.report.refused += self._batch.size - took
                batches += 1
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
        self.report.seconds = time.monotonic() - start


@dataclass
class Iperf3Report:
    name: str
    protocol: str
    bits_per_second: float = 0.0
    lost_percent: float | None = None
    error: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "protocol": self.protocol, "bits_per_second": self.bits_per_second,
                "lost_percent": self.lost_percent, "error": self.error}


def parse_iperf3(name: str, protocol: str, text: str) -> Iperf3Report:
    """The receiver-side goodput from an iperf3 -J log (the sender's claim is not goodput)."""
    try:
        data = json.loads(text)
    except ValueError:
        return Iperf3Report(name, protocol, error=f"iperf3 wrote no JSON: {text.strip()[:200]!r}")
    if "error" in data:
        return Iperf3Report(name, protocol, error=str(data["error"]), raw=data)
    end = data.get("end", {})
    if protocol == "udp":
        s = end.get("sum", {})
        return Iperf3Report(name, protocol, s.get("bits_per_second", 0.0) * (1 - s.get("lost_percent", 0.0) / 100),
                            s.get("lost_percent"), raw=data)
    return Iperf3Report(name, protocol, end.get("sum_received", {}).get("bits_per_second", 0.0), raw=data)
