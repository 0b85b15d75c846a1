"""A client for qemu-guest-agent over its virtio-serial chardev socket.

How a command runs (guest-exec, then guest-exec-status until it exits) is
kept apart from how one agent command travels, so the libvirt backend reuses
it over libvirt's own agent connection.

The agent speaks QMP-style JSON without a greeting. Bytes sent before the
agent runs wait in the virtio-serial port and are answered later, so the
stream is resynchronised with `guest-sync-delimited` (its answer follows a
0xFF byte) and answers to older syncs are skipped by id.
"""

from __future__ import annotations

import abc
import base64
import itertools
import json
import random
import shlex
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from ..core.cmd import CommandResult
from ..core.errors import GuestCommandError, GuestCommandTimeout, MachineError


class AgentCommands(abc.ABC):
    """guest-exec on top of any transport: subclasses say how one command travels."""

    name: str

    @abc.abstractmethod
    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10.0):
        """Run one agent command and return its 'return' value."""

    def run(self, command: str | Sequence[str], timeout: float = 30.0, input: bytes | None = None) -> CommandResult:
        """Run a command in the guest and wait for it, at most `timeout` s.

        A string runs under /bin/sh -c; a list is executed directly. The
        guest itself kills the command at the deadline (coreutils timeout),
        so a hung command does not live on after it timed out.
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        shown = _abbreviate(command if isinstance(command, str) else shlex.join(argv))
        wrapped = ["/usr/bin/timeout", "--signal=KILL", f"{timeout:g}", *argv]
        args: dict = {"path": wrapped[0], "arg": wrapped[1:], "capture-output": True}
        if input is not None:
            args["input-data"] = base64.b64encode(input).decode()
        start = time.monotonic()
        pid = self.execute("guest-exec", args)["pid"]
        deadline = start + timeout + 10.0  # the guest kills it at timeout; this covers a stuck guest
        delay = 0.005
        while True:
            status = self.execute("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise GuestCommandTimeout(f"{self.name}: `{shown}` did not finish in {timeout:g}s (guest unresponsive)")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        seconds = time.monotonic() - start
        code = status.get("exitcode", 128 + status.get("signal", 0))
        if code == 137 and seconds >= timeout:
            raise GuestCommandTimeout(f"{self.name}: `{shown}` did not finish in {timeout:g}s and was killed")
        return CommandResult(shown, code, _b64(status.get("out-data")), _b64(status.get("err-data")), seconds,
                             GuestCommandError)


class GuestAgent(AgentCommands):
    """One connection to one guest's agent over its chardev socket."""

    def __init__(self, path: Path, name: str = "guest"):
        self.path = path
        self.name = name
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def connect(self, timeout: float, alive=lambda: True) -> float:
        """Wait until the agent answers; returns the seconds it took.

        `alive` is polled so a QEMU that died stops the wait at once.
        """
        start = time.monotonic()
        deadline = start + timeout
        while self._sock is None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.path))
                self._sock = sock
            except OSError:
                sock.close()
                self._check(deadline, alive, "the agent socket did not open")
                time.sleep(0.02)
        wait = 0.5
        while True:
            sync_id = next(self._ids)
            self._send({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}})
            attempt_end = min(deadline, time.monotonic() + wait)
            wait = min(wait * 2, 5.0)  # requests wait unread while the agent is down: few of them
            while time.monotonic() < attempt_end:
                reply = self._recv(attempt_end)
                if reply is not None and reply.get("return") == sync_id:
                    return time.monotonic() - start
            self._check(deadline, alive, "the guest agent did not answer")

    def _check(self, deadline: float, alive, what: str) -> None:
        if not alive():
            raise MachineError(f"{self.name}: QEMU exited while waiting for the guest agent")
        if time.monotonic() >= deadline:
            raise MachineError(f"{self.name}: {what} in time")

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10.0):
        """Run one agent command and return its 'return' value."""
        message: dict = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._send(message)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._recv(deadline)
            if reply is None:
                continue
            if "error" in reply:
                err = reply["error"]
                raise GuestCommandError(f"{self.name}: agent {command} failed: {err.get('desc', err)}")
            if "return" in reply:
                return reply["return"]
        raise GuestCommandTimeout(f"{self.name}: agent command {command} got no answer in {timeout:.0f}s")

    def _send(self, message: dict) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(10.0)
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise MachineError(f"{self.name}: guest agent connection lost: {exc}") from None

    def _recv(self, deadline: float) -> dict | None:
        """One JSON object from the agent, or None when deadline passes first."""
        assert self._sock is not None
        while True:
            message = self._parse()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                raise MachineError(f"{self.name}: guest agent connection lost: {exc}") from None
            if not chunk:
                raise MachineError(f"{self.name}: guest agent connection closed")
            self._buf += chunk

    def _parse(self) -> dict | None:
        """The next JSON object in the buffer, or None when it holds no whole one."""
        if b"\xff" in self._buf:  # everything before the sync sentinel is stale
            self._buf = self._buf.rsplit(b"\xff", 1)[1]
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = b""
                return None
            try:
                obj, end = json.JSONDecoder().raw_decode(text.decode(errors="replace"))
            except ValueError:
                if b"\n" in text:  # a whole line that is not JSON: drop it
                    self._buf = text.split(b"\n", 1)[1]
                    continue
                return None
            self._buf = text.decode(errors="replace")[end:].encode()
            if isinstance(obj, dict):
                return obj
            # JSON but not an object (stale noise): skip it and look further,
            # since None would make _recv wait for bytes it already holds


def _abbreviate(command: str) -> str:
    """A command as errors show it: a script by its first line and length."""
    lines = command.strip().splitlines()
    if len(lines) <= 1 and len(command) <= 200:
        return command
    return f"{lines[0][:120]} … ({len(lines)} lines)" if len(lines) > 1 else f"{command[:200]} …"


def _b64(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""

