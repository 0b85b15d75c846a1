"""testbed.vm.guest_agent against a fake qemu-guest-agent on a unix socket.

The fake speaks newline-delimited JSON like the real agent: one request per
line in, whatever bytes the test scripts out. It records every request, so a
test can check what the client actually sent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time

import pytest

from testbed.core.errors import GuestCommandError, GuestCommandTimeout, MachineError
from testbed.vm.guest_agent import GuestAgent

PID = 4242
CLOSE = object()  # a responder returns this to make the fake hang up


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def sync_answer(request) -> bytes:
    """What the real agent sends for guest-sync-delimited: 0xFF, then the id."""
    return b"\xff" + line({"return": request["arguments"]["id"]})


class FakeAgent:
    """Accepts one connection and answers each request line with respond(request)."""

    def __init__(self, path, respond):
        self.path = path
        self.respond = respond
        self.requests: list[dict] = []
        self._conn: socket.socket | None = None
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def commands(self) -> list[str]:
        return [r["execute"] for r in self.requests]

    def last(self, command: str) -> dict:
        return [r for r in self.requests if r["execute"] == command][-1]

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    request = json.loads(raw)
                    self.requests.append(request)
                    reply = self.respond(request)
                    if reply is CLOSE:
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    if reply:
                        conn.sendall(reply)

    def close(self) -> None:
        for sock in (self._listener, self._conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
        self._thread.join(timeout=2)


def guest(exec_reply=None, status=None):
    """A responder for a well-behaved guest.

    exec_reply: the whole reply (bytes, or CLOSE) to guest-exec.
    status: a callable(request) -> the 'return' of guest-exec-status,
    or a list of them handed out in order.
    """
    if isinstance(status, list):
        queue = list(status)

        def status(request):
            return queue.pop(0)

    status = status or (lambda request: {"exited": True, "exitcode": 0})

    def respond(request):
        command = request["execute"]
        if command == "guest-sync-delimited":
            return sync_answer(request)
        if command == "guest-exec":
            return exec_reply if exec_reply is not None else line({"return": {"pid": PID}})
        if command == "guest-exec-status":
            return line({"return": status(request)})
        if command == "guest-info":
            return line({"return": {"version": "fake"}})
        return line({"error": {"class": "CommandNotFound", "desc": f"unknown {command}"}})

    return respond


@pytest.fixture
def serve(tmp_path):
    """serve(respond) -> the FakeAgent; every one is closed after the test."""
    servers = []

    def start(respond):
        server = FakeAgent(tmp_path / "qga.sock", respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def client(tmp_path):
    agents = []

    def make():
        agent = GuestAgent(tmp_path / "qga.sock", name="vm1")
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


@pytest.fixture
def connected(serve, client):
    """connected(respond) -> (agent after connect(), its FakeAgent)."""

    def start(respond):
        server = serve(respond)
        agent = client()
        agent.connect(timeout=2.0)
        return agent, server

    return start


# --- connect -------------------------------------------------------------


def test_connect_skips_garbage_lines_and_answers_to_older_syncs(serve, client):
    def respond(request):
        if request["execute"] == "guest-sync-delimited":
            sync_id = request["arguments"]["id"]
            return (b"\x00\x01 boot noise, not json\n"
                    + line({"return": sync_id - 1})  # a sync the agent saw before it was up
                    + line({"return": sync_id}))
        return guest()(request)

    serve(respond)
    agent = client()
    agent.connect(timeout=2.0)
    # had connect() taken the older answer, {"return": sync_id} would still be
    # queued and come back as the answer to the next command
    assert agent.execute("guest-info") == {"version": "fake"}


def test_connect_discards_everything_before_the_sync_sentinel(serve, client):
    def respond(request):
        if request["execute"] == "guest-sync-delimited":
            stale = line({"return": {"pid": 1}}) + b'half a reply {"ret'  # no newline: only 0xFF ends it
            return stale + sync_answer(request)
        return guest()(request)

    serve(respond)
    agent = client()
    agent.connect(timeout=2.0)
    assert agent.execute("guest-info") == {"version": "fake"}


def test_connect_syncs_again_until_the_agent_answers(serve, client):
    syncs = []

    def respond(request):
        if request["execute"] == "guest-sync-delimited":
            syncs.append(request["arguments"]["id"])
            if len(syncs) == 1:
                return None  # agent not running yet: the first sync goes unanswered
            return sync_answer(request)
        return guest()(request)

    serve(respond)
    client().connect(timeout=3.0)
    assert len(syncs) == 2
    assert syncs[0] != syncs[1]


def test_connect_gives_up_with_machine_error_when_agent_is_silent(serve, client):
    serve(lambda request: None)
    with pytest.raises(MachineError, match="vm1: the guest agent did not answer in time"):
        client().connect(timeout=0.1)


def test_connect_stops_at_once_when_qemu_is_gone(client):
    with pytest.raises(MachineError, match="QEMU exited"):
        client().connect(timeout=5.0, alive=lambda: False)


# --- run -----------------------------------------------------------------


def test_run_polls_exec_status_until_exited(connected):
    agent, server = connected(guest(status=[
        {"exited": False},
        {"exited": False},
        {"exited": True, "exitcode": 3,
         "out-data": base64.b64encode(b"hello\n").decode(),
         "err-data": base64.b64encode(b"oops\n").decode()},
    ]))
    result = agent.run(["/bin/true"])
    assert server.commands()[-4:] == ["guest-exec", "guest-exec-status", "guest-exec-status", "guest-exec-status"]
    assert all(r["arguments"] == {"pid": PID} for r in server.requests if r["execute"] == "guest-exec-status")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "hello\n", "oops\n")
    assert not result.ok
    with pytest.raises(GuestCommandError, match="exited 3: oops"):  # a guest's failure is a GuestCommandError
        result.check()


def test_run_without_output_gives_empty_strings(connected):
    agent, _ = connected(guest())
    result = agent.run(["/bin/true"])
    assert (result.exit_code, result.stdout, result.stderr, result.ok) == (0, "", "", True)


def test_run_wraps_argv_in_guest_side_timeout(connected):
    agent, server = connected(guest())
    agent.run(["ip", "-j", "link"], timeout=7.5)
    args = server.last("guest-exec")["arguments"]
    assert args["path"] == "/usr/bin/timeout"
    assert args["arg"] == ["--signal=KILL", "7.5", "ip", "-j", "link"]
    assert args["capture-output"] is True
    assert "input-data" not in args


def test_run_string_command_goes_through_sh_c(connected):
    agent, server = connected(guest())
    result = agent.run("echo hi | wc -c", timeout=30)
    assert server.last("guest-exec")["arguments"]["arg"] == ["--signal=KILL", "30", "/bin/sh", "-c", "echo hi | wc -c"]
    assert result.command == "echo hi | wc -c"


def test_run_sends_input_as_base64(connected):
    agent, server = connected(guest())
    data = b"\x00binary\xff\nline\n"
    agent.run(["cat"], input=data)
    assert base64.b64decode(server.last("guest-exec")["arguments"]["input-data"]) == data


def test_run_killed_at_the_deadline_raises_timeout_naming_the_command(connected):
    timeout = 0.05
    started = {}

    def status(request):
        # like the guest: the command runs until timeout(1) kills it at the deadline
        started.setdefault("t", time.monotonic())
        if time.monotonic() - started["t"] < timeout + 0.01:
            return {"exited": False}
        return {"exited": True, "exitcode": 137}

    agent, _ = connected(guest(status=status))
    with pytest.raises(GuestCommandTimeout, match=r"vm1: `sleep 60` did not finish in 0.05s and was killed"):
        agent.run(["sleep", "60"], timeout=timeout)


def test_run_exit_137_before_the_deadline_is_an_ordinary_result(connected):
    agent, _ = connected(guest(status=[{"exited": True, "exitcode": 137}]))
    result = agent.run(["kill", "-9", "$$"], timeout=30)
    assert result.exit_code == 137


def test_run_reports_death_by_signal_as_128_plus_signal(connected):
    agent, _ = connected(guest(status=[{"exited": True, "signal": 11}]))
    assert agent.run(["crash"]).exit_code == 139


def test_agent_error_reply_raises_guest_command_error(connected):
    error = line({"error": {"class": "GenericError", "desc": "Failed to execute child process"}})
    agent, _ = connected(guest(exec_reply=error))
    with pytest.raises(GuestCommandError, match="vm1: agent guest-exec failed: Failed to execute child process") as info:
        agent.run(["/nonexistent"])
    assert not isinstance(info.value, GuestCommandTimeout)


def test_connection_closed_by_agent_raises_machine_error(connected):
    agent, _ = connected(guest(exec_reply=CLOSE))
    with pytest.raises(MachineError, match="vm1: guest agent connection closed"):
        agent.run(["/bin/true"])


def test_execute_skips_a_stale_non_object_json_line(connected):
    agent, _ = connected(guest(exec_reply=b'"stale"\n' + line({"return": {"pid": PID}})))
    assert agent.execute("guest-exec", {"path": "/bin/true"}, timeout=1.0) == {"pid": PID}


