"""Bulk generators without a VM: batched sends and iperf3's report."""

from __future__ import annotations

import json
import socket

import pytest

from testbed.traffic.bulk import FrameBatch, parse_iperf3
from testbed.traffic.flows import HostFloodSpec, Iperf3Spec
from testbed.traffic.run import json_complete


def test_a_frame_batch_sends_every_frame_in_one_call():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        frames = [bytes([i]) * (100 + i) for i in range(5)]
        assert FrameBatch(frames).send(a) == 5
        assert [b.recv(1000) for _ in frames] == frames


def test_a_full_queue_is_counted_not_raised():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.setblocking(False)
        batch = FrameBatch([b"x" * 1000] * 32)
        taken = sum(batch.send(a) for _ in range(200))  # nobody reads b
        assert 0 < taken < 32 * 200


def test_a_closed_socket_raises():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.close()
    with a, pytest.raises(OSError):
        FrameBatch([b"x"]).send(a)


def test_flood_spec_bounds():
    with pytest.raises(ValueError, match="flood f: rate"):
        HostFloodSpec("f", "s2", rate=0)
    with pytest.raises(ValueError, match="size 1-1400"):
        HostFloodSpec("f", "s2", rate=10, size=9000)


def test_iperf3_commands():
    spec = Iperf3Spec("t", "c1", "s2", protocol="udp", rate="50M", size=1200, dscp=8)
    client = spec.client_command("10.42.0.22", 7.5)
    assert client.startswith("iperf3 -c 10.42.0.22 -p 5201 -t 7.5 -J -l 1200")
    assert "-b 50M" in client and "--tos 32" in client and client.endswith(" -u")
    assert "-s -1 -p 5201" in spec.server_command()


def test_iperf3_goodput_is_the_receivers():
    tcp = {"end": {"sum_sent": {"bits_per_second": 9e7}, "sum_received": {"bits_per_second": 8e7}}}
    assert parse_iperf3("t", "tcp", json.dumps(tcp)).bits_per_second == 8e7
    udp = {"end": {"sum": {"bits_per_second": 1e8, "lost_percent": 25.0}}}
    r = parse_iperf3("u", "udp", json.dumps(udp))
    assert r.bits_per_second == pytest.approx(7.5e7) and r.lost_percent == 25.0
    assert parse_iperf3("t", "tcp", json.dumps({"error": "unable to connect"})).error == "unable to connect"
    assert "wrote no JSON" in parse_iperf3("t", "tcp", "iperf3: boom").error


def test_an_ipv6_flood_frame_gets_the_udp_checksum_scapy_computes():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    from testbed.traffic.frames import with_udp6_checksum

    inner = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=20000, dport=9000, chksum=0) / Raw(bytes(1200))
    frame = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=4789, chksum=0)
                  / VXLAN(vni=42, flags=0x08) / Ether() / inner)
    fixed = Ether(with_udp6_checksum(frame))
    expected = IPv6(bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=20000, dport=9000) / Raw(bytes(1200))))
    assert fixed[VXLAN][UDP].chksum == expected[UDP].chksum != 0
    out = with_udp6_checksum(frame)
    assert len(out) == len(frame) and out[:-1202] == frame[:-1202] and out[-1200:] == frame[-1200:]


def test_an_iperf3_document_is_complete_only_when_it_parses():
    """A read between iperf3's writes holds intervals with "end" keys and is not yet the report."""
    whole = json.dumps({"start": {"connected": [{"socket": 6}]},
                        "intervals": [{"streams": [{"start": 0, "end": 1.0, "bytes": 100}]}],
                        "end": {"sum_received": {"bits_per_second": 4.2e7}}}, indent="\t")
    cut = whole[:whole.index('"end": {')]
    assert '"end"' in cut
    assert not json_complete(cut)
    assert not json_complete("")
    assert json_complete(whole)
