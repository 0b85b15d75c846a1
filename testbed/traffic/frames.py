"""Whole frames for the host traffic port, built once with scapy.

Every packet the host injects into the overlay is the same stack: outer
Ether/IPv4/UDP/VXLAN addressed to the destination VM's underlay address,
then the inner Ether/IP/transport addressed to a container. Scapy builds
that stack once per flow; senders then only swap the payload's bytes, which
keeps scapy (milliseconds per packet) out of every send.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from ..core.netns import interface_mac
from ..net.fabric import TRAFFIC_PORT
from ..net.overlay import host_overlay_address, host_overlay_address6, host_overlay_mac
from ..net.topology import VXLAN_PORT

if TYPE_CHECKING:
    from ..net.deployment import Deployment

UDP_PROTO = "udp"
ICMP_PROTO = "icmp"


@dataclass(frozen=True)
class FrameSpec:
    """What one flow's frames carry; the payload is replaced per packet."""

    dst: str  # container name
    sport: int
    dport: int
    size: int  # inner payload bytes
    dscp: int = 0
    protocol: str = UDP_PROTO
    icmp_id: int = 0
    ip: int = 4  # the inner packet's IP version


def outer_source_port(spec: FrameSpec, address: str) -> int:
    """The outer UDP source port: a hash of the inner flow, as the kernel's VXLAN picks it.

    It is the entropy the underlay (and the tap's queue selection) sees, so
    distinct inner flows spread over queues as they would between hosts.
    """
    return 49152 + zlib.crc32(f"{spec.protocol}:{spec.sport}:{spec.dport}:{address}".encode()) % 16384


def template(deployment: Deployment, spec: FrameSpec) -> bytes:
    """The whole frame of one packet of spec, with a zeroed payload to be replaced."""
    t = deployment.topology
    container = deployment.container(spec.dst).container
    vm = next(vm for vm, c in t.containers() if c.name == spec.dst)
    overlay = t.overlay(container.overlay)
    tos = spec.dscp << 2
    if spec.ip == 6:
        # IPv6 makes the UDP checksum mandatory: the sender fills it in per packet, as for ICMP
        l3 = IPv6(src=host_overlay_address6(t, overlay.name), dst=overlay.address6(container.address), tc=tos, hlim=64)
    else:
        l3 = IP(src=host_overlay_address(t, overlay.name), dst=container.address, ttl=64, tos=tos, id=0, flags="DF")
    if spec.protocol == UDP_PROTO:
        inner = UDP(sport=spec.sport, dport=spec.dport, chksum=0)
    elif spec.protocol == ICMP_PROTO:
        # the checksum covers the payload; the sender fixes it per packet
        inner = (ICMPv6EchoRequest(id=spec.icmp_id, seq=0, cksum=0) if spec.ip == 6
                 else ICMP(type=8, id=spec.icmp_id, seq=0, chksum=0))
    else:
        raise ValueError(f"protocol {spec.protocol!r}: frames are udp or icmp")
    frame = (
        Ether(src=interface_mac(deployment.fabric.netns, TRAFFIC_PORT), dst=deployment.nic_mac(vm.name))
        / IP(src=t.traffic_port_address, dst=t.underlay_of(vm), ttl=64, tos=tos, id=0, flags="DF")
        / UDP(sport=outer_source_port(spec, container.address), dport=VXLAN_PORT, chksum=0)
        / VXLAN(vni=overlay.vni, flags=0x08)
        / Ether(src=host_overlay_mac(t, overlay.name), dst=container.mac)
        / l3
        / inner
        / Raw(bytes(spec.size))
    )
    return bytes(frame)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum, for the ICMP header a probe rewrites."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header6(frame: bytes, l3: int, proto: int, length: int) -> bytes:
    """The IPv6 pseudo-header (RFC 8200 8.1) for the packet whose IPv6 header starts at l3."""
    return frame[l3 + 8:l3 + 40] + length.to_bytes(4, "big") + b"\0\0\0" + bytes([proto])


INNER_L3 = 14 + 20 + 8 + 8 + 14  # outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet: where template()'s inner IP starts


def with_udp6_checksum(frame: bytes) -> bytes:
    """A template() frame of inner IPv6 UDP with its UDP checksum filled in (IPv6 forbids a zero one).

    For frames whose payload never changes (a flood's); probes fix theirs per packet.
    """
    udp = INNER_L3 + 40
    length = len(frame) - udp
    segment = frame[udp:udp + 6] + b"\0\0" + frame[udp + 8:]
    checksum = internet_checksum(pseudo_header6(frame, INNER_L3, 17, length) + segment) or 0xFFFF
    return frame[:udp + 6] + checksum.to_bytes(2, "big") + frame[udp + 8:]
