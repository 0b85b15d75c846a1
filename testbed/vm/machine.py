"""One QEMU process, owned from launch to the last removed socket.

Modelled on QEMU's own python/qemu/machine: a context manager; a launch
failure carries the command line and QEMU's output; shutdown goes QMP
`quit`, then SIGTERM, then SIGKILL, and always cleans up; events are awaited
by matching a sub-dictionary. Commands reach the guest through
qemu-guest-agent; the serial console goes to a file from the first byte and
is scanned for kernel splats.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import time
from pathlib import Path

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ..core.errors import MachineError
from .guest_agent import GuestAgent
from .machine_common import MachineCommon
from .qemu_cmd import AGENT_PORT_ID, MachineSpec, RunFiles, build_argv, qemu_binary
from .splat import ConsoleWatcher

QMP_CONNECT_TIMEOUT = 10.0


def _matches(event: dict, match: dict) -> bool:
    """True when match is a sub-dictionary of event (recursively)."""
    for key, want in match.items():
        got = event.get(key)
        if isinstance(want, dict):
            if not isinstance(got, dict) or not _matches(got, want):
                return False
        elif got != want:
            return False
    return True


class Machine(MachineCommon):
    """A running VM: QMP for control, the guest agent for commands."""

    def __init__(self, spec: MachineSpec, run_dir: Path, boot_timeout: float = 90.0):
        self.spec = spec
        self.files = RunFiles(run_dir)
        self.boot_timeout = boot_timeout
        self.console = ConsoleWatcher(self.files.console)
        self.argv: list[str] = []
        self.boot_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self._agent: GuestAgent | None = None
        self._events: list[dict] = []
        self.crashes: list[str] = []

    @property
    def name(self) -> str:
        return self.spec.name

    # --- lifecycle -----------------------------------------------------------------

    def _emulator_died(self) -> str | None:
        """How QEMU died, if a signal killed it (an emulator crash, not a guest failure)."""
        status = self._proc.returncode if self._proc is not None else None
        return f"QEMU killed by signal {-status}" if status is not None and status < 0 else None

    def launch(self) -> None:
        """Start QEMU and connect QMP; raise MachineError naming the cause."""
        self.files.dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.files.qmp, self.files.agent, self.files.shell, self.files.console, self.files.pidfile):
            stale.unlink(missing_ok=True)
        self.argv = build_argv(self.spec, self.files, qemu_binary())
        self._started = time.monotonic()
        with open(self.files.qemu_log, "wb") as log:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = time.monotonic() + QMP_CONNECT_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise self._launch_error(f"QEMU exited with status {self._proc.returncode} at launch")
            if self.files.qmp.exists():
                qmp = QEMUMonitorProtocol(str(self.files.qmp))
                try:
                    qmp.connect()
                    self._qmp = qmp
                    break
                except (QMPError, OSError):
                    qmp.close()
            if time.monotonic() > deadline:
                raise self._launch_error(f"QMP socket did not answer within {QMP_CONNECT_TIMEOUT:.0f}s")
            time.sleep(0.01)

    def _launch_error(self, what: str) -> MachineError:
        output = self.files.qemu_log.read_text(errors="replace").strip() if self.files.qemu_log.exists() else ""
        return MachineError(f"{self.name}: {what}\n  command: {shlex.join(self.argv)}\n  QEMU said: {output or '(nothing)'}")

    def wait_ready(self) -> float:
        """Resume the guest and wait for its agent; seconds from launch to its answer.

        The guest opening the agent's port (QMP VSERPORT_CHANGE) says qemu-ga
        runs; only then is it asked to sync, so no request piles up unread.
        """
        deadline = self._started + self.boot_timeout
        self.qmp("cont")
        try:
            try:
                self._wait_event_until("VSERPORT_CHANGE", {"id": AGENT_PORT_ID, "open": True}, deadline,
                                       self._check_boot)
            except MachineError:
                if self.is_running() and time.monotonic() >= deadline:  # the deadline, not a death
                    raise MachineError(f"{self.name}: the guest did not come up within {self.boot_timeout:g} s "
                                       "(its agent never opened its port)") from None
                raise
            agent = GuestAgent(self.files.agent, self.name)
            try:
                agent.connect(max(deadline - time.monotonic(), 5.0), alive=self._check_boot)
            except BaseException:
                agent.close()
                raise
        except MachineError as exc:
            tail = self.console.tail(20).strip()
            raise MachineError(f"{exc}; the console's last lines ({self.files.console}):\n"
                               f"{tail or '(the console stayed empty: the kernel printed nothing)'}") from None
        self._agent = agent
        self.boot_seconds = time.monotonic() - self._started
        return self.boot_seconds

    def _check_boot(self) -> bool:
        """True while booting may go on; raises on a panic or a dead QEMU."""
        fatal = [s for s in self.console.poll() if s.kind == "panic"]
        if fatal:
            raise MachineError(f"{self.name}: kernel panic during boot: {fatal[0].title}")
        if not self.is_running():
            raise MachineError(f"{self.name}: QEMU exited during boot (status {self._proc.returncode})")
        return True

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def shutdown(self, timeout: float = 5.0) -> int | None:
        """Stop QEMU however it must be stopped; idempotent. Returns its status."""
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if self._qmp is not None:
                with contextlib.suppress(QMPError, OSError, RuntimeError):
                    self._qmp.cmd("quit")
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                try:
                    proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                self._qmp.close()
            self._qmp = None
        for path in (self.files.qmp, self.files.agent, self.files.shell, self.files.pidfile):
            path.unlink(missing_ok=True)
        return proc.returncode if proc is not None else None

    # --- control ---------------------------------------------------------------------

    def qmp(self, command: str, **arguments) -> object:
        if self._qmp is None:
            raise MachineError(f"{self.name}: not running")
        try:
            return self._qmp.cmd(command, **arguments)
        except QMPError as exc:
            raise MachineError(f"{self.name}: QMP {command} failed: {exc}") from None

    def _wait_event_until(self, name: str, match: dict, deadline: float, keep_going) -> dict:
        if self._qmp is None:
            raise MachineError(f"{self.name}: not running")
        while True:
            for event in self._events:
                if event.get("event") == name and _matches(event.get("data", {}), match):
                    self._events.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not keep_going():
                raise MachineError(f"{self.name}: no {name} event matching {match} in time")
            with contextlib.suppress(TimeoutError, QMPError):
                event = self._qmp.pull_event(wait=min(remaining, 0.2))
                if event is not None:
                    self._events.append(event)

    def how_to_reach(self, agent_free: bool = True) -> str:
        """Where this VM's sockets and logs are (for --keep and `up`).

        agent_free: nobody holds the guest agent's socket, so a user may talk to it.
        """
        agent = f" (e.g. socat - UNIX-CONNECT:{self.files.agent})" if agent_free else ""
        return (f"{self.name}: console log {self.files.console}; QMP {self.files.qmp}; "
                f"guest agent {self.files.agent}{agent}; QEMU pid {self._proc.pid if self._proc else '?'}")
