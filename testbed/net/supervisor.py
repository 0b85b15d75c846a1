"""`prism-testbed up`: a topology that outlives the command that started it.

`up` resolves the kernel, image and accelerator in the foreground (builds
show their progress), then starts a detached process, the supervisor
(testbed.net.up_process, which runs the Supervisor below). It owns the Deployment, so it is the run's recorded owner and
the reaper spares the run while it lives; a supervisor killed outright
leaves a run that the next reaper removes, as for any dead run. It reports
`ready` (or a one-line error) on a pipe, then serves requests on a unix
socket in the run directory: run a command in a VM or a container, reset a
VM's shell console, go down. SIGTERM also takes it down cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..build.image import GuestImage
from ..build.kernel import Kernel
from ..core.errors import RunError, TestbedError
from ..vm import guest_shell
from ..vm.accel import AccelChoice
from .deployment import Deployment
from .fabric import _process_start, new_run_id, reap_stale, runtime_base, runtime_dir

STATE = "up.json"
CONTROL = "control.sock"
LOG = "supervisor.log"
_SAY = "@prism "


@dataclass(frozen=True)
class UpRun:
    """A running `up` deployment, as its state file describes it."""

    run_id: str
    pid: int
    pid_start: str
    topology: str
    kernel: str
    accel: str
    started: str
    describe: str
    vms: dict[str, list[str]]  # VM name -> its containers
    degraded: dict[str, str] = field(default_factory=dict)  # VM name -> what happened to it (first splat, exit)

    @property
    def dir(self) -> Path:
        return runtime_dir(self.run_id)

    def alive(self) -> bool:
        return _process_start(self.pid) == self.pid_start

    def vm_of(self, container: str) -> str | None:
        return next((vm for vm, names in self.vms.items() if container in names), None)


def up_runs() -> list[UpRun]:
    """Every `up` deployment whose state file is readable, oldest first."""
    runs = []
    if runtime_base().is_dir():
        for state in runtime_base().glob(f"*/{STATE}"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                runs.append(UpRun(**json.loads(state.read_text())))
    return sorted(runs, key=lambda r: r.started)


def find_run(run_id: str | None) -> UpRun:
    """The run named, or the only one running."""
    runs = up_runs()
    if run_id is not None:
        for run in runs:
            if run.run_id == run_id:
                return run
        known = ", ".join(r.run_id for r in runs) or "none"
        raise RunError(f"run {run_id}: no such `up` deployment (running: {known})")
    if not runs:
        raise RunError("no `up` deployment is running (start one with `prism-testbed up TOPOLOGY`)")
    if len(runs) > 1:
        raise RunError(f"{len(runs)} `up` deployments are running ({', '.join(r.run_id for r in runs)}): name one")
    return runs[0]


def call(run: UpRun, payload: dict, timeout: float = 120.0) -> dict:
    """Send one request to a run's supervisor and return its answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(run.dir / CONTROL))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except OSError as exc:
        raise RunError(f"run {run.run_id}: its supervisor (pid {run.pid}) does not answer: {exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise RunError(f"run {run.run_id}: the supervisor sent no answer") from None
    if "error" in reply:
        raise RunError(reply["error"])
    return reply


# --- the foreground side ---------------------------------------------------------------


def start(topology: str, kernel: Kernel, image: GuestImage, accel: AccelChoice, boot_timeout: float = 180.0,
          on_phase=None, kernel_args: tuple[str, ...] = ()) -> UpRun:
    """Start a supervisor for topology and wait until it is up (or failed)."""
    spec = {"run_id": new_run_id(), "topology": str(topology), "boot_timeout": boot_timeout,
            "kernel_args": list(kernel_args),
            "kernel": {"bzimage": str(kernel.bzimage), "release": kernel.release, "variant": kernel.variant},
            "image": {"root": str(image.root), "key": image.key}, "accel": accel.as_dict()}
    proc = subprocess.Popen([sys.executable, "-m", "testbed.net.up_process", json.dumps(spec)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    other: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith(_SAY):
                other.append(line.rstrip())
                continue
            kind, _, rest = line[len(_SAY):].rstrip("\n").partition(" ")
            if kind == "ready":
                return find_run(spec["run_id"])
            if kind == "phase" and on_phase is not None:
                on_phase(rest)
            elif kind == "error":
                proc.wait(timeout=60)
                raise RunError(rest)
            elif kind == "trace":
                other.append(rest)
        code = proc.wait(timeout=60)
        raise RunError(f"the supervisor exited ({code}) before the topology was up: {' | '.join(other[-5:])}")
    except BaseException:
        if proc.poll() is None:  # Ctrl-C or an error here: take the half-built run down
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def stop(run: UpRun, timeout: float = 60.0) -> str:
    """Take a run down; how it went (asked its supervisor, or had to reap it)."""
    how = "stopped by its supervisor"
    try:
        call(run, {"op": "down"}, timeout=10)
    except RunError:
        if run.alive():
            os.kill(run.pid, signal.SIGTERM)
            how = "supervisor did not answer; sent SIGTERM"
        else:
            how = "supervisor was gone; reaped"
    deadline = time.monotonic() + timeout
    while run.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if run.alive():
        os.kill(run.pid, signal.SIGKILL)
        time.sleep(0.2)
        how = "supervisor did not stop in time; killed and reaped"
    reap_stale()  # a dead owner: its QEMUs, netns and run directory go
    if run.dir.exists():
        raise RunError(f"run {run.run_id}: {run.dir} is still there after down ({how})")
    return how


# --- the supervisor process ------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            reply = self.server.supervisor.dispatch(json.loads(self.rfile.readline()))  # type: ignore[attr-defined]
        except TestbedError as exc:
            reply = {"error": str(exc)}
        except Exception as exc:  # a bug: the client still gets one line
            traceback.print_exc()
            reply = {"error": f"supervisor: {type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


WATCH_SECONDS = 1.0  # how often the supervisor looks at its QEMUs and consoles


class Supervisor:
    """Owns one deployment, watches its VMs and answers requests about it.

    A VM whose QEMU exited or whose console showed a splat (panic, BUG,
    WARNING, lockup) makes the run degraded: the state file says which VM
    and the splat's first line, `status` shows it and `exec` on that VM
    leads with it. Polling the QEMU also reaps it (no zombie).
    """

    def __init__(self, deployment: Deployment, on_change=None):
        self.deployment = deployment
        self.stopping = threading.Event()
        self.degraded: dict[str, str] = {}
        self._on_change = on_change or (lambda degraded: None)
        self._locks: dict[str, threading.Lock] = {}  # one guest-agent conversation per VM at a time
        self._guard = threading.Lock()

    def watch(self) -> None:
        """Until stopping: note each VM's first splat or its QEMU's exit (run in a thread)."""
        while not self.stopping.wait(WATCH_SECONDS):
            self.look()

    def look(self) -> None:
        changed = False
        for name, vm in self.deployment.machines.items():
            lock = self._lock(name)
            if name in self.degraded or not lock.acquire(blocking=False):
                continue  # a command holds the VM (and its console reader): look next time
            try:
                splats = vm.splats()
                if splats:
                    self.degraded[name] = f"{splats[0].kind}: {splats[0].title} (console {vm.files.console})"
                elif not vm.is_running():
                    self.degraded[name] = f"its QEMU exited (console {vm.files.console})"
            finally:
                lock.release()
            changed |= name in self.degraded
        if changed:
            self._on_change(dict(self.degraded))

    def _lock(self, vm: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(vm, threading.Lock())

    def dispatch(self, req: dict) -> dict:
        op = req.get("op")
        if op == "down":
            self.stopping.set()
            return {"ok": True}
        if op == "status":
            self.look()
            return {"describe": self.deployment.describe(agent_free=False), "degraded": dict(self.degraded)}
        if op == "exec":
            return self._exec(req.get("vm"), req.get("container"), str(req["command"]), float(req.get("timeout", 60)))
        if op == "shell-reset":
            vm = self._vm(req.get("vm"))
            with self._lock(vm.name):
                vm.run(guest_shell.reset_script(), timeout=15, check=True)
            return {"ok": True}
        raise RunError(f"supervisor: unknown request {op!r}")

    def _vm(self, name: str | None):
        try:
            return self.deployment.vm(str(name))
        except KeyError as exc:
            raise RunError(exc.args[0]) from None

    def _exec(self, vm_name: str | None, container: str | None, command: str, timeout: float) -> dict:
        try:
            return self._exec_in(vm_name, container, command, timeout)
        except TestbedError as exc:
            self.look()
            vm = str(vm_name)
            if container:
                with contextlib.suppress(KeyError):  # an unknown container: its own error says so
                    vm = self.deployment.container(container).machine.name
            if vm in self.degraded:  # what happened to the VM, not what the broken connection said
                raise RunError(f"vm {vm} is down: {self.degraded[vm]} (then: {exc})") from None
            raise

    def _exec_in(self, vm_name: str | None, container: str | None, command: str, timeout: float) -> dict:
        if container:
            try:
                handle = self.deployment.container(container)
            except KeyError as exc:
                raise RunError(exc.args[0]) from None
            if vm_name and handle.machine.name != vm_name:
                raise RunError(f"container {container} runs on vm {handle.machine.name}, not {vm_name}")
            with self._lock(handle.machine.name):
                result = handle.exec(command, timeout=timeout)
        else:
            vm = self._vm(vm_name)
            with self._lock(vm.name):
                result = vm.run(command, timeout=timeout)
        return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}
