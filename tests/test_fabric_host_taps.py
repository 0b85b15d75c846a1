"""Host taps for the libvirt backend: made in the host's namespace, moved into
the run's while their queues are open (as QEMU holds them), moved back for a
relaunch, and never left behind."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import time

import pytest

from testbed.net.fabric import BRIDGE, Fabric, new_run_id

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x0100


def links(netns: str | None = None) -> dict[str, str]:
    """name -> master (or '') of the interfaces in a namespace (the host's by default)."""
    argv = ["ip", *(["-n", netns] if netns else []), "-o", "link", "show"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        name = line.split(": ", 2)[1].split("@")[0]
        fields = line.split()
        result[name] = fields[fields.index("master") + 1] if "master" in fields else ""
    return result


def rx_packets(netns: str, name: str) -> int:
    out = subprocess.run(["ip", "-n", netns, "-s", "-o", "link", "show", name], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split("RX:")[1].split("\\")[1].split()[1])


def open_queues(name: str, queues: int) -> list[int]:
    """Attach to a tap's queues as QEMU does (TUNSETIFF per queue)."""
    fds = []
    for _ in range(queues):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE))
        fds.append(fd)
    return fds


@pytest.fixture
def fabric():
    fab = Fabric(new_run_id())
    fab.create()
    try:
        yield fab
    finally:
        fab.destroy()


def test_a_tap_with_open_queues_moves_onto_the_run_bridge_and_keeps_working(fabric):
    name = fabric.add_host_tap(queues=2)
    assert name.startswith(f"pt{fabric.run_id}") and name in links()
    fds = open_queues(name, 2)
    try:
        fabric.adopt_host_tap(name)
        assert name not in links()
        assert links(fabric.netns)[name] == BRIDGE
        frame = b"\xff" * 6 + bytes.fromhex("525400000001") + b"\x08\x06" + bytes(46)
        for fd in fds:  # one frame through each queue, as the guest would send
            os.write(fd, frame)
        deadline = time.monotonic() + 5
        while rx_packets(fabric.netns, name) < 2:
            assert time.monotonic() < deadline, "frames written to the moved tap's queues never arrived"
            time.sleep(0.05)

        fabric.release_host_tap(name)  # a relaunch opens it in the host's namespace again
        assert links()[name] == "" and name not in links(fabric.netns)
        fabric.adopt_host_tap(name)
        assert links(fabric.netns)[name] == BRIDGE
    finally:
        for fd in fds:
            os.close(fd)


def test_destroy_deletes_host_taps_never_moved(fabric):
    name = fabric.add_host_tap(queues=1)
    assert name in links()
    fabric.destroy()
    assert name not in links()


def test_remove_tap_finds_the_tap_wherever_it_is(fabric):
    here, there = fabric.add_host_tap(queues=1), fabric.add_host_tap(queues=1)
    fabric.adopt_host_tap(there)
    fabric.remove_tap(here)
    fabric.remove_tap(there)
    assert here not in links() and there not in links(fabric.netns)
    assert fabric.host_taps == [] and fabric.taps == []
