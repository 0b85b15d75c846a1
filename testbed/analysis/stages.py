"""Where packets queue and drop, stage by stage, from the kernel's own counters.

A loaded run is only meaningful if it shows where the queue formed: in the
host tap (before the guest, where no guest mechanism can help), in the
guest's softnet backlog or NAPI budget (where PRISM acts), or at a socket.
This module parses the counters that say so; collecting them is a matter
of reading files in the guest and on the host.

- /proc/net/softnet_stat, one row per CPU (Linux 6.1, net/core/net-procfs.c):
  processed, dropped (backlog full), time_squeeze (NAPI budget or time ran
  out), five zeros, cpu_collision (0), received_rps, flow_limit_count,
  backlog length (input and process queues), cpu index; all hexadecimal.
- `ip -s -j link show`: per-device rx/tx packets and drops (tap, eth0, the
  VXLAN device, whose rx_dropped counts gro_cells overflows, veths).
- /proc/net/snmp: Udp InErrors and RcvbufErrors (socket drops).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..core.errors import VerdictError


@dataclass(frozen=True)
class SoftnetRow:
    cpu: int
    processed: int
    dropped: int
    time_squeeze: int
    received_rps: int
    flow_limit: int
    backlog: int


def parse_softnet(text: str) -> list[SoftnetRow]:
    """Rows of /proc/net/softnet_stat (13 hexadecimal columns in 6.1)."""
    rows = []
    for lineno, line in enumerate(text.strip().splitlines(), 1):
        cols = line.split()
        if len(cols) != 13:
            raise VerdictError(f"softnet_stat line {lineno}: {len(cols)} columns, expected 13 (Linux 6.1 format)")
        v = [int(c, 16) for c in cols]
        rows.append(SoftnetRow(cpu=v[12], processed=v[0], dropped=v[1], time_squeeze=v[2], received_rps=v[9],
                               flow_limit=v[10], backlog=v[11]))
    return rows


@dataclass(frozen=True)
class LinkStats:
    name: str
    rx_packets: int
    rx_dropped: int
    tx_packets: int
    tx_dropped: int


def parse_ip_link(text: str) -> dict[str, LinkStats]:
    """Per-device counters from `ip -s -j link show`."""
    try:
        links = json.loads(text)
    except ValueError as exc:
        raise VerdictError(f"`ip -s -j link` output is not JSON: {exc}") from None
    out = {}
    for link in links:
        stats = link.get("stats64") or link.get("stats") or {}
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        out[link["ifname"]] = LinkStats(link["ifname"], rx.get("packets", 0), rx.get("dropped", 0),
                                        tx.get("packets", 0), tx.get("dropped", 0))
    return out


def parse_snmp(text: str, protocol: str = "Udp") -> dict[str, int]:
    """One protocol's counters from /proc/net/snmp (a header line, then values)."""
    lines = [line.split() for line in text.splitlines() if line.startswith(f"{protocol}:")]
    if len(lines) < 2:
        raise VerdictError(f"/proc/net/snmp has no {protocol} counters")
    header, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(header, values, strict=True)}
