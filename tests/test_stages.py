"""Per-stage counters, parsed from the kernel's own files."""

from __future__ import annotations

import json

import pytest

from testbed.analysis.stages import parse_ip_link, parse_snmp, parse_softnet
from testbed.core.errors import VerdictError


def softnet_line(processed, dropped, squeeze, backlog, cpu, rps=0, flow_limit=0) -> str:
    values = [processed, dropped, squeeze, 0, 0, 0, 0, 0, 0, rps, flow_limit, backlog, cpu]
    return " ".join(f"{v:08x}" for v in values)


def test_softnet_columns_follow_linux_6_1():
    text = softnet_line(0x1878, 2, 13, 125, 0, rps=7, flow_limit=1) + "\n" + softnet_line(5, 0, 0, 0, 1) + "\n"
    rows = parse_softnet(text)
    assert rows[0].processed == 0x1878 and rows[0].dropped == 2 and rows[0].time_squeeze == 13
    assert rows[0].backlog == 125 and rows[0].received_rps == 7 and rows[0].flow_limit == 1
    assert [r.cpu for r in rows] == [0, 1]


def test_a_line_of_another_format_is_refused():
    with pytest.raises(VerdictError, match="softnet_stat line 1: 11 columns, expected 13"):
        parse_softnet("00000001 " * 11)


def test_ip_link_json():
    text = json.dumps([
        {"ifname": "tap0", "stats64": {"rx": {"packets": 10, "dropped": 0}, "tx": {"packets": 438025, "dropped": 41737}}},
        {"ifname": "vx42", "stats64": {"rx": {"packets": 5, "dropped": 2}, "tx": {"packets": 1, "dropped": 0}}},
    ])
    links = parse_ip_link(text)
    assert links["tap0"].tx_dropped == 41737 and links["vx42"].rx_dropped == 2
    with pytest.raises(VerdictError, match="not JSON"):
        parse_ip_link("Device not found")


def test_snmp_udp_counters():
    text = ("Ip: Forwarding DefaultTTL\nIp: 1 64\n"
            "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 2000 3 4 2000 4 0\n")
    udp = parse_snmp(text)
    assert udp["RcvbufErrors"] == 4 and udp["NoPorts"] == 3
    with pytest.raises(VerdictError, match="no Tcp counters"):
        parse_snmp(text, "Tcp")
