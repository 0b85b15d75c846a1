"""The plain data every analysis module shares: one probe's record, and how results become JSON and text.

Kept apart from latency and verdict so neither imports the other for it
(they did, in a circle).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class ProbeRecord:
    """One probe as the traffic engine saw it; one record per probe sent.

    received_ns is the first copy's arrival (None: never arrived) on the
    sender's clock, so RTT = received_ns - sent_ns. Further copies are only
    counted, in duplicate_count. length_ok and crc_ok describe the first copy
    and mean nothing for a lost probe.

    guest_*_ns are the stamps a UDP reflector wrote into the first copy, on
    the guest's clock (not the sender's): the kernel's receive stamp of the
    probe on the reflector's socket, when the reflector read it and when it
    sent the reply; None where the reply carried none (ICMP, TCP, an old
    reflector, a lost probe). testbed.analysis.breakdown splits the RTT with them.
    """

    flow: str
    seq: int
    sent_ns: int
    received_ns: int | None
    length_ok: bool
    crc_ok: bool
    duplicate_count: int = 0
    guest_rx_ns: int | None = None
    guest_read_ns: int | None = None
    guest_send_ns: int | None = None

    @property
    def corrupted(self) -> bool:
        return self.received_ns is not None and not (self.length_ok and self.crc_ok)


class ProbeRow(NamedTuple):
    """One probe as a run record stores it: a JSON list, read and written only through this.

    rtt_ns is None for a lost probe; stamps are the guest's [kernel rx,
    reflector read, reply sent] minus sent_ns ([] when the reply carried
    none: testbed.analysis.breakdown.probe_stamps).
    """

    seq: int
    sent_ns: int
    rtt_ns: int | None
    length_ok: bool
    crc_ok: bool
    duplicates: int = 0
    stamps: Sequence[int] = ()

    @classmethod
    def of(cls, record: ProbeRecord, stamps: Sequence[int]) -> ProbeRow:
        rtt = None if record.received_ns is None else record.received_ns - record.sent_ns
        return cls(record.seq, record.sent_ns, rtt, record.length_ok, record.crc_ok, record.duplicate_count, stamps)

    @classmethod
    def from_list(cls, row: list) -> ProbeRow:
        return cls(*row)

    @property
    def intact_rtt_ns(self) -> int | None:
        """The RTT of a probe that came back undamaged; None otherwise."""
        return self.rtt_ns if self.rtt_ns is not None and self.length_ok and self.crc_ok else None


class JsonData:
    """Plain-data forms of the results for the JSON report; times are microseconds."""

    def to_dict(self) -> dict:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def plain(value: object) -> object:
    """JSON has no infinity: an unbounded CI end becomes null."""
    if isinstance(value, JsonData):
        return value.to_dict()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def prober_problem(receive_drops: int) -> str | None:
    """Why a run's losses cannot be the guest's (None: they can).

    A reply the host prober's own socket dropped would count as a probe the
    guest lost: such a run says nothing about loss, so it does not count.
    """
    if not receive_drops:
        return None
    return f"the host prober's receive socket dropped {receive_drops} frames (host too busy to read them)"
