"""The host's packet sockets: who queues what on the traffic port.

The flood and the probes leave through the same port the replies arrive
on. The prober's receive socket must queue the replies and none of the
flood, and report what it dropped; the senders must queue nothing (a
sending socket bound to a protocol took a copy of every arriving frame
until its buffer filled). These run as root in a namespace of their own
with a veth pair, so no traffic leaves it.
"""

from __future__ import annotations

import socket

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from testbed.core.netns import sending_socket
from testbed.traffic.prober import reply_socket, socket_drops


def _frame(tag: int) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.99.0.1", dst="10.99.0.2")
                 / UDP(sport=9, dport=9) / Raw(tag.to_bytes(4, "big") * 300))


def _drain(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def test_the_reply_socket_queues_what_arrives_and_nothing_that_leaves(veth_netns):
    """Guards the prober against a flood it would have to read past: 20k frames leave, 3 arrive."""
    rx = reply_socket(veth_netns, "a0")
    out, back = sending_socket(veth_netns, "a0"), sending_socket(veth_netns, "b0")
    try:
        flood = _frame(1)
        for _ in range(20_000):  # far more than the socket's buffer holds
            out.send(flood)
        for tag in (2, 3, 4):
            back.send(_frame(tag))  # arrives on a0
        got = _drain(rx)
        assert [frame[42:46] for frame in got] == [t.to_bytes(4, "big") for t in (2, 3, 4)], \
            f"{len(got)} frames queued; the reply socket must queue only the 3 that arrived"
        assert socket_drops(rx) == 0
    finally:
        for s in (rx, out, back):
            s.close()


def test_a_sending_socket_queues_nothing(veth_netns):
    out, back = sending_socket(veth_netns, "a0"), sending_socket(veth_netns, "b0")
    try:
        for _ in range(100):
            out.send(_frame(1))
            back.send(_frame(2))
        assert _drain(out) == [] and _drain(back) == []
    finally:
        out.close()
        back.close()
