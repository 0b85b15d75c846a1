"""The payload every probe carries, so each reply can be checked on its own.

A probe's payload starts with a fixed header: magic, version, flow id,
sequence number, send timestamp and the payload's total length, then a
stamp block the reflector fills in, filler bytes that depend on (flow, seq),
and ends with a CRC32 of everything the sender wrote. A reflector echoes the
payload, writing only the stamp block, so the sender can tell from the reply
alone which probe it is, when it left, where the guest spent its time, and
whether any byte it wrote changed or went missing on the way.

Layout (network byte order):

    0   4  magic  b"PRSM"
    4   1  version (2)
    5   1  reserved (0)
    6   2  flow id
    8   4  sequence number
    12  8  send timestamp, ns (sender's CLOCK_REALTIME or hardware stamp)
    20  2  total payload length, bytes
    22  2  reserved (0)
    24 24  stamp block, three u64 ns of the guest's CLOCK_REALTIME, 0 = not
           written: the kernel's receive stamp of the probe on the
           reflector's socket, when the reflector read it, when it sent the
           reply (images/src/prism-reflector.c). The sender writes zeros.
    48  …  filler: bytes of a counter seeded by (flow, seq)
    -4  4  CRC32 (zlib) of bytes 0 .. 24 and 48 .. length-4

The CRC leaves the stamp block out, so the reflector need not recompute it
and a reply is still checked for damage to every byte the sender wrote.
Whatever echoes the payload unchanged (the kernel's ICMP echo, the TCP
reflector) returns zero stamps.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..core.errors import VerdictError

MAGIC = b"PRSM"
VERSION = 2
WARMUP_FLOW = 0xFFFF  # flow id of the probes that check a path before a run (never a mix's flow)
_HEADER = struct.Struct("!4sBBHIQHH")
HEADER_SIZE = _HEADER.size  # 24
_STAMPS = struct.Struct("!QQQ")
STAMPS_OFFSET = HEADER_SIZE
STAMPS_SIZE = _STAMPS.size  # 24
FILLER_OFFSET = STAMPS_OFFSET + STAMPS_SIZE  # 48
MIN_SIZE = FILLER_OFFSET + 4
MAX_SIZE = 65507  # the largest UDP payload over IPv4


@dataclass(frozen=True)
class Probe:
    """A decoded probe payload; length_ok and crc_ok say whether it arrived whole.

    guest_*_ns are the reflector's stamps (guest clock), 0 where it wrote none.
    """

    flow: int
    seq: int
    sent_ns: int
    length: int
    length_ok: bool
    crc_ok: bool
    guest_rx_ns: int = 0
    guest_read_ns: int = 0
    guest_send_ns: int = 0

    @property
    def intact(self) -> bool:
        return self.length_ok and self.crc_ok


def _filler(flow: int, seq: int, size: int) -> bytes:
    """Bytes that differ per probe and per offset, so a swapped or shifted block shows."""
    start = (flow * 2654435761 + seq * 40503) & 0xFF
    return bytes((start + i) & 0xFF for i in range(size))


def _crc(payload: bytes | bytearray) -> int:
    """CRC32 of all but the stamp block and the CRC itself."""
    return zlib.crc32(payload[FILLER_OFFSET:-4], zlib.crc32(payload[:STAMPS_OFFSET]))


def encode(flow: int, seq: int, sent_ns: int, size: int) -> bytes:
    """A payload of exactly `size` bytes for probe (flow, seq) sent at sent_ns, stamps zero."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"probe size {size} must be between {MIN_SIZE} and {MAX_SIZE} bytes")
    if not 0 <= flow <= 0xFFFF or not 0 <= seq <= 0xFFFFFFFF or not 0 <= sent_ns < 1 << 64:
        raise ValueError(f"probe (flow {flow}, seq {seq}, sent {sent_ns}) is out of the header's range")
    body = (_HEADER.pack(MAGIC, VERSION, 0, flow, seq, sent_ns, size, 0) + bytes(STAMPS_SIZE)
            + _filler(flow, seq, size - MIN_SIZE))
    return body + struct.pack("!I", _crc(body + bytes(4)))


def stamp(payload: bytes, sent_ns: int) -> bytes:
    """The same probe with its send timestamp (and so its CRC) set just before sending."""
    body = bytearray(payload)
    struct.pack_into("!Q", body, 12, sent_ns)
    struct.pack_into("!I", body, len(body) - 4, _crc(body))
    return bytes(body)


def fill_stamps(payload: bytes, rx_ns: int, read_ns: int, send_ns: int) -> bytes:
    """payload with its stamp block written, as the reflector writes it (for tests and tools)."""
    body = bytearray(payload)
    _STAMPS.pack_into(body, STAMPS_OFFSET, rx_ns, read_ns, send_ns)
    return bytes(body)


def decode(payload: bytes) -> Probe:
    """The probe a payload claims to be; VerdictError if it is not a probe at all.

    A payload that is a probe but arrived damaged decodes with length_ok or
    crc_ok False, so the damage is counted against the right flow and seq.
    """
    if len(payload) < HEADER_SIZE or payload[:4] != MAGIC:
        raise VerdictError(f"not a probe payload ({len(payload)} bytes, starts {payload[:4]!r})")
    magic, version, _reserved, flow, seq, sent_ns, length, _reserved2 = _HEADER.unpack_from(payload)
    if version != VERSION:
        raise VerdictError(f"probe payload version {version}, expected {VERSION}")
    length_ok = len(payload) == length
    crc_ok = length_ok and length >= MIN_SIZE and struct.unpack("!I", payload[-4:])[0] == _crc(payload)
    stamps = _STAMPS.unpack_from(payload, STAMPS_OFFSET) if len(payload) >= FILLER_OFFSET else (0, 0, 0)
    return Probe(flow, seq, sent_ns, length, length_ok, crc_ok, *stamps)
