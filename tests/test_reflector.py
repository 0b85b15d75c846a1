"""The guest's reflector, built and run on the host in a private network namespace."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from testbed.analysis import breakdown
from testbed.analysis.verdict import ProbeRecord
from testbed.core.netns import socket_in
from testbed.traffic import probe
from testbed.traffic.prober import SO_TIMESTAMPNS

SOURCE = Path(__file__).resolve().parent.parent / "images" / "src" / "prism-reflector.c"

CLIENT = textwrap.dedent("""
    import socket, subprocess, sys, time
    sys.path.insert(0, {root!r})
    from testbed.traffic import probe
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    server = subprocess.Popen([{binary!r}, "-u", "-t", "-p", "7007"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("prism-reflector: serving udp tcp on port 7007")
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.settimeout(5)
            sent = [probe.encode(1, seq, time.time_ns(), size) for seq, size in enumerate((64, 1400, 9000, 60000))]
            for payload in sent:
                s.sendto(payload, (address, 7007))
            got = sorted((s.recvfrom(65536)[0] for _ in sent), key=len)
            # unchanged but for the stamp block, which the reflector fills in
            unstamped = [g[:probe.STAMPS_OFFSET] + bytes(24) + g[probe.FILLER_OFFSET:] for g in got]
            assert unstamped == sorted(sent, key=len), "udp echo differs"
            assert all(probe.decode(g).intact and probe.decode(g).guest_read_ns for g in got)
        t = socket.create_connection(("127.0.0.1", 7007), timeout=5)
        for seq in range(20):
            request = probe.encode(2, seq, time.time_ns(), 200)
            t.sendall(request)
            reply = b""
            while len(reply) < len(request):
                reply += t.recv(65536)
            assert reply == request, "tcp echo differs"  # TCP carries no stamps
        print("OK")
    finally:
        server.terminate()
        assert server.wait(5) == 0
""")


@pytest.fixture(scope="module")
def reflector(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: tools/install-host-deps installs build-essential")
    binary = tmp_path_factory.mktemp("reflector") / "prism-reflector"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def test_reflector_echoes_udp_v4_v6_stamped_and_tcp_unchanged(reflector):
    script = CLIENT.format(root=str(SOURCE.parent.parent.parent), binary=str(reflector))
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr


def test_reflector_rejects_bad_arguments(reflector):
    proc = subprocess.run([str(reflector), "-p", "0"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "port must be 1-65535" in proc.stderr


@pytest.fixture
def netns():
    """A network namespace of this test's own (bd-test-PID), with lo up; deleted afterwards."""
    name = f"bd-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@contextlib.contextmanager
def serving(netns: str, binary: Path, *flags: str):
    server = subprocess.Popen(["ip", "netns", "exec", netns, str(binary), "-p", "7007", *flags],
                              stdout=subprocess.PIPE, text=True)
    try:
        yield server.stdout.readline()
    finally:
        server.terminate()
        assert server.wait(5) == 0


def exchange(netns: str, payloads: list[bytes], gap: float = 0.0, stamp: bool = True) -> list[tuple[int, int, bytes]]:
    """Send each payload (a probe, given stamp: with its send time) to the reflector in netns, one at a time.

    Returns (sent ns, received ns, reply) for each.

    Sent and received times are the kernel's clock, as the reflector's stamps are here (one host, one clock).
    """
    s = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.settimeout(5)
    out = []
    try:
        for payload in payloads:
            sent = time.time_ns()
            s.sendto(probe.stamp(payload, sent) if stamp else payload, ("127.0.0.1", 7007))
            reply, ancillary, _flags, _addr = s.recvmsg(65536, 64)
            sec, nsec = struct.unpack("qq", ancillary[0][2][:16])
            out.append((sent, sec * 1_000_000_000 + nsec, reply))
            time.sleep(gap)
    finally:
        s.close()
    return out


def test_reflector_stamps_probes_with_ordered_guest_times(reflector, netns):
    with serving(netns, reflector, "-u") as banner:
        assert banner.startswith("prism-reflector: serving udp on port 7007, stamping udp probes")
        got = exchange(netns, [probe.encode(1, seq, 0, size) for seq, size in enumerate((64, 200, 1400))])
    for sent, received, reply in got:
        p = probe.decode(reply)
        assert p.intact and p.sent_ns == sent
        # one kernel, one clock here: the probe left, reached the socket, was read, answered, came back
        assert sent <= p.guest_rx_ns <= p.guest_read_ns <= p.guest_send_ns <= received, p
        assert p.guest_rx_ns > 0
        for offset in (5, 20, probe.FILLER_OFFSET, len(reply) - 1):  # outside the stamp block: caught
            damaged = bytearray(reply)
            damaged[offset] ^= 0x40
            assert not probe.decode(bytes(damaged)).intact, offset


def test_reflector_echoes_other_datagrams_and_raw_mode_unchanged(reflector, netns):
    v1 = bytearray(probe.encode(1, 1, 0, 100))
    v1[4] = 1  # a probe of the layout before stamps: its bytes 24..48 are covered by its CRC
    others = [bytes(v1), b"PRSM", b"not a probe at all" * 4]
    with serving(netns, reflector, "-u"):
        assert [reply for _, _, reply in exchange(netns, others, stamp=False)] == others
    payload = probe.encode(1, 2, 0, 100)
    with serving(netns, reflector, "-u", "-r") as banner:
        assert "stamping" not in banner
        (sent, _, reply), = exchange(netns, [payload])
    assert reply == probe.stamp(payload, sent)


def test_breakdown_of_probes_through_a_namespace(reflector, netns):
    """Sender and reflector share a clock here, so the estimated offset must come out near zero."""
    with serving(netns, reflector, "-u"):
        got = exchange(netns, [probe.encode(1, seq, 0, 200) for seq in range(200)], gap=0.002)
    records = []
    for seq, (sent, received, reply) in enumerate(got):
        p = probe.decode(reply)
        records.append(ProbeRecord("p", seq, sent, received, p.length_ok, p.crc_ok, 0,
                                   p.guest_rx_ns or None, p.guest_read_ns or None, p.guest_send_ns or None))
    found = breakdown.breakdown(records)
    assert found is not None and found.probes == 200 and found.unstamped == 0
    assert abs(found.offset_ns) < 1_000_000, found  # a true offset of 0, within a millisecond
    assert found.namespace_wait.p50 >= 0 and found.reflector.p50 >= 0
    print(f"\nloopback in {netns}: " + ", ".join(f"{c} p50 {getattr(found, c).p50:.1f} p99 {getattr(found, c).p99:.1f} µs"
                                           for c in ("rtt", *breakdown.COMPONENTS)) + f", offset {found.offset_ns} ns")
