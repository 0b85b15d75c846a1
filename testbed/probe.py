"""The payload every probe carries, so each reply can be checked on its own.

A probe's payload starts with a fixed header: magic, version, flow id,
sequence number, send timestamp and the payload's total length, followed by
filler bytes that depend on (flow, seq), and ends with a CRC32 of all that
precedes it. A reflector echoes the payload unchanged, so the sender can
tell from the reply alone which probe it is, when it left, and whether any
byte of it changed or went missing on the way.

Layout (network byte order):

    0   4  magic  b"PRSM"
    4   1  version (1)
    5   1  reserved (0)
    6   2  flow id
    8   4  sequence number
    12  8  send timestamp, ns (sender's CLOCK_REALTIME or hardware stamp)
    20  2  total payload length, bytes
    22  …  filler: bytes of a counter seeded by (flow, seq)
    -4  4  CRC32 (zlib) of bytes 0 .. length-4
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import VerdictError

MAGIC = b"PRSM"
VERSION = 1
_HEADER = struct.Struct("!4sBBHIQH")
HEADER_SIZE = _HEADER.size  # 22
MIN_SIZE = HEADER_SIZE + 4
MAX_SIZE = 65507  # the largest UDP payload over IPv4


@dataclass(frozen=True)
class Probe:
    """A decoded probe payload; length_ok and crc_ok say whether it arrived whole."""

    flow: int
    seq: int
    sent_ns: int
    length: int
    length_ok: bool
    crc_ok: bool

    @property
    def intact(self) -> bool:
        return self.length_ok and self.crc_ok


def _filler(flow: int, seq: int, size: int) -> bytes:
    """Bytes that differ per probe and per offset, so a swapped or shifted block shows."""
    start = (flow * 2654435761 + seq * 40503) & 0xFF
    return bytes((start + i) & 0xFF for i in range(size))


def encode(flow: int, seq: int, sent_ns: int, size: int) -> bytes:
    """A payload of exactly `size` bytes for probe (flow, seq) sent at sent_ns."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"probe size {size} must be between {MIN_SIZE} and {MAX_SIZE} bytes")
    if not 0 <= flow <= 0xFFFF or not 0 <= seq <= 0xFFFFFFFF or not 0 <= sent_ns < 1 << 64:
        raise ValueError(f"probe (flow {flow}, seq {seq}, sent {sent_ns}) is out of the header's range")
    body = _HEADER.pack(MAGIC, VERSION, 0, flow, seq, sent_ns, size) + _filler(flow, seq, size - MIN_SIZE)
    return body + struct.pack("!I", zlib.crc32(body))


def stamp(payload: bytes, sent_ns: int) -> bytes:
    """The same probe with its send timestamp (and so its CRC) set just before sending."""
    body = bytearray(payload[:-4])
    struct.pack_into("!Q", body, 12, sent_ns)
    return bytes(body) + struct.pack("!I", zlib.crc32(body))


def decode(payload: bytes) -> Probe:
    """The probe a payload claims to be; VerdictError if it is not a probe at all.

    A payload that is a probe but arrived damaged decodes with length_ok or
    crc_ok False, so the damage is counted against the right flow and seq.
    """
    if len(payload) < HEADER_SIZE or payload[:4] != MAGIC:
        raise VerdictError(f"not a probe payload ({len(payload)} bytes, starts {payload[:4]!r})")
    magic, version, _reserved, flow, seq, sent_ns, length = _HEADER.unpack_from(payload)
    if version != VERSION:
        raise VerdictError(f"probe payload version {version}, expected {VERSION}")
    length_ok = len(payload) == length
    crc_ok = length_ok and struct.unpack("!I", payload[-4:])[0] == zlib.crc32(payload[:-4])
    return Probe(flow, seq, sent_ns, length, length_ok, crc_ok)
