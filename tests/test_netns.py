"""Sockets made inside another network namespace, from a thread that enters it."""

from __future__ import annotations

import secrets
import socket
import subprocess

import pytest

from testbed.core.errors import FabricError
from testbed.core.netns import interface_mac, socket_in


@pytest.fixture
def netns():
    name = f"ptest-{secrets.token_hex(3)}"  # not prism-*: the reaper owns those
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.199.0.1/32", "dev", "lo"], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "d0", "address", "02:00:00:00:be:ef",
                        "type", "veth", "peer", "name", "d1"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_socket_lives_in_the_namespace_and_the_process_does_not_move(netns):
    inside = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        inside.bind(("10.199.0.1", 0))  # an address that exists only in that namespace
    finally:
        inside.close()
    outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            outside.bind(("10.199.0.1", 0))
    finally:
        outside.close()


def test_interface_mac_reads_inside_the_namespace(netns):
    assert interface_mac(netns, "d0") == "02:00:00:00:be:ef"
    with pytest.raises(FabricError, match="no interface nope"):
        interface_mac(netns, "nope")


def test_missing_namespace_is_a_clear_error():
    with pytest.raises(FabricError, match="netns ptest-missing: cannot open"):
        socket_in("ptest-missing", socket.AF_INET, socket.SOCK_DGRAM)
