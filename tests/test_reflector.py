"""The guest's reflector, built and run on the host in a private network namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "images" / "src" / "prism-reflector.c"

CLIENT = textwrap.dedent("""
    import socket, subprocess, sys, time
    sys.path.insert(0, {root!r})
    from testbed import probe
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
            assert got == sorted(sent, key=len), "udp echo differs"
            assert all(probe.decode(g).intact for g in got)
        t = socket.create_connection(("127.0.0.1", 7007), timeout=5)
        for seq in range(20):
            request = probe.encode(2, seq, time.time_ns(), 200)
            t.sendall(request)
            reply = b""
            while len(reply) < len(request):
                reply += t.recv(65536)
            assert reply == request, "tcp echo differs"
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


def test_reflector_echoes_udp_v4_v6_and_tcp_unchanged(reflector):
    script = CLIENT.format(root=str(SOURCE.parent.parent.parent), binary=str(reflector))
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr


def test_reflector_rejects_bad_arguments(reflector):
    proc = subprocess.run([str(reflector), "-p", "0"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "port must be 1-65535" in proc.stderr
