"""The prober's frame handling, without a VM: templates and reply parsing."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from testbed.traffic import probe
from testbed.traffic.flows import ProbeFlow
from testbed.traffic.prober import parse_reply


def reply_frame(payload: bytes, outer_options: bytes = b"") -> bytes:
    outer = IP(src="192.168.77.12", dst="192.168.77.2", options=outer_options) if outer_options else \
        IP(src="192.168.77.12", dst="192.168.77.2")
    return bytes(Ether() / outer / UDP(sport=55555, dport=4789) / VXLAN(vni=42)
                 / Ether() / IP(src="10.42.0.21", dst="10.42.0.1") / UDP(sport=7007, dport=40001) / Raw(payload))


def test_parse_reply_finds_the_inner_payload():
    payload = probe.encode(1, 5, 123, 200)
    assert parse_reply(reply_frame(payload)) == payload


def test_parse_reply_handles_outer_ip_options():
    payload = probe.encode(1, 5, 123, 64)
    assert parse_reply(reply_frame(payload, outer_options=b"\x01\x01\x01\x00")) == payload


@pytest.mark.parametrize("frame", [
    bytes(Ether() / IP() / UDP(dport=53) / Raw(bytes(100))),             # not VXLAN
    bytes(Ether() / IP(proto=6) / Raw(bytes(100))),                      # not UDP
    bytes(Ether(type=0x86DD) / Raw(bytes(120))),                          # not IPv4
    b"\x00" * 20,                                                         # runt
])
def test_parse_reply_ignores_other_frames(frame):
    assert parse_reply(frame) is None


def test_probe_flow_validation():
    assert ProbeFlow("p", "s1", flow_id=3).source_port == 40003
    with pytest.raises(ValueError, match="rate"):
        ProbeFlow("p", "s1", flow_id=1, rate=0)
    with pytest.raises(ValueError, match="dscp"):
        ProbeFlow("p", "s1", flow_id=1, dscp=64)


def icmp_reply_frame(payload: bytes) -> bytes:
    from scapy.layers.inet import ICMP
    return bytes(Ether() / IP(src="192.168.77.12", dst="192.168.77.2") / UDP(sport=55555, dport=4789) / VXLAN(vni=42)
                 / Ether() / IP(src="10.42.0.21", dst="10.42.0.1") / ICMP(type=0, id=40001, seq=7) / Raw(payload))


def test_parse_reply_finds_an_icmp_echo_replys_payload():
    payload = probe.encode(1, 7, 123, 200)
    assert parse_reply(icmp_reply_frame(payload)) == payload


def test_icmp_probe_frames_carry_seq_and_a_valid_checksum():
    from scapy.layers.inet import ICMP

    from testbed.traffic.prober import probe_frame
    flow = ProbeFlow("p", "s1", flow_id=1, protocol="icmp", size=64)
    template = bytes(Ether() / IP(src="192.168.77.2", dst="192.168.77.12") / UDP(sport=5, dport=4789) / VXLAN(vni=42)
                     / Ether() / IP(src="10.42.0.1", dst="10.42.0.21") / ICMP(type=8, id=40001) / Raw(bytes(64)))
    payload = probe.encode(1, 70000, 5, 64)
    frame = Ether(probe_frame(template, flow, 70000, payload))
    icmp = frame[VXLAN][ICMP]
    assert icmp.seq == 70000 & 0xFFFF and bytes(icmp.payload) == payload
    claimed = icmp.chksum
    del icmp.chksum
    assert ICMP(bytes(icmp)).chksum == claimed  # scapy recomputes it the same


def test_probe_flow_rejects_unknown_protocols_and_sizes():
    with pytest.raises(ValueError, match="protocol 'sctp'"):
        ProbeFlow("p", "s1", flow_id=1, protocol="sctp")
    with pytest.raises(ValueError, match="size 10"):
        ProbeFlow("p", "s1", flow_id=1, size=10)


def v6_template(l4) -> bytes:
    from scapy.layers.inet6 import IPv6
    return bytes(Ether() / IP(src="192.168.77.2", dst="192.168.77.12") / UDP(sport=5, dport=4789) / VXLAN(vni=42)
                 / Ether(type=0x86DD) / IPv6(src="fd00:0:0:2a::1", dst="fd00:0:0:2a::15") / l4 / Raw(bytes(64)))


@pytest.mark.parametrize("protocol", ["udp", "icmp"])
def test_ipv6_probe_frames_carry_valid_checksums(protocol):
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, in6_chksum

    from testbed.traffic.prober import probe_frame
    flow = ProbeFlow("p", "s1", flow_id=1, protocol=protocol, ip=6, size=64)
    l4 = ICMPv6EchoRequest(id=40001, cksum=0) if protocol == "icmp" else UDP(sport=40001, dport=7007, chksum=0)
    payload = probe.encode(1, 3, 5, 64)
    inner = Ether(probe_frame(v6_template(l4), flow, 3, payload))[VXLAN][IPv6]
    segment = bytes(inner.payload)
    assert segment[8:] == payload and segment[2:4] != b"\0\0"
    # summed with its own checksum, a valid segment sums to zero
    assert in6_chksum(58 if protocol == "icmp" else 17, inner, segment) == 0


def test_parse_reply_handles_inner_ipv6_udp_and_echo_reply():
    from scapy.layers.inet6 import ICMPv6EchoReply, IPv6
    payload = probe.encode(1, 9, 5, 100)
    for l4 in (UDP(sport=7007, dport=40001), ICMPv6EchoReply(id=1, seq=9)):
        frame = bytes(Ether() / IP(src="192.168.77.12", dst="192.168.77.2") / UDP(sport=5, dport=4789) / VXLAN(vni=42)
                      / Ether() / IPv6(src="fd00:0:0:2a::15", dst="fd00:0:0:2a::1") / l4 / Raw(payload))
        assert parse_reply(frame) == payload


def test_record_of_keeps_the_guest_stamps_and_none_where_the_reply_had_none():
    from testbed.traffic.prober import Reply, record_of
    stamped = probe.decode(probe.fill_stamps(probe.encode(1, 4, 100, 64), 150, 160, 170))
    r = record_of("p", 4, 100, Reply(rx_ns=300, decoded=stamped, copies=2))
    assert (r.received_ns, r.duplicate_count, r.length_ok, r.crc_ok) == (300, 1, True, True)
    assert (r.guest_rx_ns, r.guest_read_ns, r.guest_send_ns) == (150, 160, 170)
    echoed = record_of("p", 5, 100, Reply(rx_ns=300, decoded=probe.decode(probe.encode(1, 5, 100, 64))))
    assert (echoed.guest_rx_ns, echoed.guest_read_ns, echoed.guest_send_ns) == (None, None, None)
    lost = record_of("p", 6, 100, None)
    assert lost.received_ns is None and lost.guest_rx_ns is None


def test_receiver_takes_the_stamps_from_each_reply():
    import socket
    import struct
    import threading

    from testbed.traffic.prober import SO_TIMESTAMPNS, HostProber, record_of

    flow = ProbeFlow("p", "s1", flow_id=1)
    stop = threading.Event()
    replies = [reply_frame(probe.fill_stamps(probe.encode(1, 0, 100, 200), 150, 160, 170)),
               reply_frame(probe.fill_stamps(probe.encode(1, 0, 100, 200), 151, 161, 171)),  # a duplicate
               reply_frame(probe.encode(1, 1, 110, 200))]  # echoed unstamped

    class FakeRx:
        def recvmsg(self, _size, _ancillary):
            if not replies:
                stop.set()
                raise TimeoutError
            kernel_stamp = struct.pack("qq", 0, 300)
            return replies.pop(0), [(socket.SOL_SOCKET, SO_TIMESTAMPNS, kernel_stamp)], 0, ("tp0", 0x800, 0, 1, b"")

    received, foreign = {}, [0]
    HostProber(None, [flow])._receive(FakeRx(), stop, received, foreign)
    assert foreign == [0] and set(received) == {(1, 0), (1, 1)}
    first = record_of("p", 0, 100, received[(1, 0)])
    assert (first.received_ns, first.duplicate_count) == (300, 1)
    assert (first.guest_rx_ns, first.guest_read_ns, first.guest_send_ns) == (150, 160, 170)  # the first copy's
    assert record_of("p", 1, 110, received[(1, 1)]).guest_rx_ns is None


@pytest.mark.parametrize(("hold", "message"), [
    ({"nobody": 0.01}, r"hold \['nobody'\]: only a probe flow of this run"),
    ({"p": -0.01}, r"hold \['p'\]"),
    ({"p": 5.0}, r"0 to the grace \(2.0 s\)"),
    ({"t": 0.01}, "a TCP request/response flow is timed from its slot"),
])
def test_a_hold_names_a_packet_flow_of_the_run_and_fits_in_the_grace(hold, message):
    from testbed.traffic.prober import HostProber

    flows = [ProbeFlow("p", "s1", flow_id=1), ProbeFlow("t", "s1", flow_id=2, protocol="tcp")]
    with pytest.raises(ValueError, match=message):
        HostProber(None, flows, hold=hold)
