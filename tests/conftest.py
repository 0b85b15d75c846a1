"""Fixtures the unit tests share."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def veth_netns() -> Iterator[str]:
    """A namespace of its own holding a veth pair a0 <-> b0, both up, IPv6 off (the kernel sends nothing itself)."""
    name = f"ptest-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                       check=True, timeout=10)
        for cmd in ("link add a0 type veth peer name b0", "link set a0 up", "link set b0 up"):
            subprocess.run(["ip", "-n", name, *cmd.split()], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)
