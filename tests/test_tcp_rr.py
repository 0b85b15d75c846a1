"""TCP request/response probes against a local echo server: schedule, timestamps, checks."""

from __future__ import annotations

import socket
import threading
import time

from testbed.analysis.verdict import RunResults
from testbed.traffic import tcp_rr
from testbed.traffic.flows import ProbeFlow


def echo_server(mangle_seq: int | None = None, delay=lambda n: 0.0) -> tuple[socket.socket, threading.Thread]:
    """An echo server on loopback; delay(n) seconds before answering request n, request mangle_seq damaged."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        n = 0
        with conn:
            while data := conn.recv(65536):
                time.sleep(delay(n))
                if n == mangle_seq:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                conn.sendall(data)
                n += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def connected(server: socket.socket) -> socket.socket:
    sock = socket.create_connection(server.getsockname())
    sock.setsockopt(socket.SOL_SOCKET, tcp_rr.SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_every_request_is_answered_timed_and_checked():
    server, _ = echo_server()
    flow = ProbeFlow("tcp", "s1", flow_id=1, protocol="tcp", rate=500, count=50, size=300)
    result = tcp_rr.TcpRrResult()
    with server, connected(server) as sock:
        tcp_rr.run_flow(sock, flow, time.time_ns(), result, threading.Event())
    integrity = RunResults.from_records(result.records).integrity("tcp")
    assert integrity.intact and integrity.sent == 50 and len(result.lateness_ns) == 50
    assert all(0 < r.received_ns - r.sent_ns < 1e9 for r in result.records)


def test_a_damaged_response_counts_as_corrupted():
    server, _ = echo_server(mangle_seq=3)
    flow = ProbeFlow("tcp", "s1", flow_id=1, protocol="tcp", rate=1000, count=6)
    result = tcp_rr.TcpRrResult()
    with server, connected(server) as sock:
        tcp_rr.run_flow(sock, flow, time.time_ns(), result, threading.Event())
    assert [r.corrupted for r in result.records] == [False, False, False, True, False, False]


def test_a_closed_connection_loses_the_rest_and_says_why():
    server, _ = echo_server()
    flow = ProbeFlow("tcp", "s1", flow_id=1, protocol="tcp", rate=1000, count=5)
    result = tcp_rr.TcpRrResult()
    with server:
        sock = connected(server)
        sock.close()
        tcp_rr.run_flow(sock, flow, time.time_ns(), result, threading.Event())
    assert result.error and all(r.received_ns is None for r in result.records) and len(result.records) == 5


def test_a_slow_path_cannot_stretch_the_run():
    server, _ = echo_server(delay=lambda n: 0.3)
    flow = ProbeFlow("tcp", "s1", flow_id=1, protocol="tcp", rate=100, count=100)  # a 1 s schedule
    result = tcp_rr.TcpRrResult()
    start = time.monotonic()
    with server, connected(server) as sock:
        tcp_rr.run_flow(sock, flow, time.time_ns(), result, threading.Event())
    assert time.monotonic() - start < 3.0
    assert result.skipped > 80 and len(result.records) == 100  # every slot is recorded
    results = RunResults.from_records(result.records)
    assert results.integrity("tcp").lost == result.skipped  # a skipped slot is a lost probe, in the tail
    assert results.tail("tcp", 99).censored


def test_a_request_that_waited_behind_a_slow_one_carries_the_wait():
    """Closed loop, 10 ms slots, a 0.2 s stall on request 2: requests 3.. left late, and their latency
    is timed from their slot, so the stall shows in every probe it delayed, not in one alone."""
    server, _ = echo_server(delay=lambda n: 0.2 if n == 2 else 0.0)
    flow = ProbeFlow("tcp", "s1", flow_id=1, protocol="tcp", rate=100, count=30)
    result = tcp_rr.TcpRrResult()
    with server, connected(server) as sock:
        tcp_rr.run_flow(sock, flow, time.time_ns(), result, threading.Event())
    rtts_ms = [(r.received_ns - r.sent_ns) / 1e6 for r in result.records]
    assert rtts_ms[2] >= 200
    assert all(rtt >= 200 - 10 * (i - 2) - 5 for i, rtt in enumerate(rtts_ms[3:8], start=3)), rtts_ms[:10]
