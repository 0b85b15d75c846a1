"""The detached supervisor process of `prism-testbed up`: bring the topology up, serve, take it down.

testbed.net.supervisor starts it (`python -m testbed.net.up_process SPEC`)
and talks to it; this is its life: the run's log, the deployment, the
control socket, the Supervisor's watch, and a teardown no signal cuts short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from ..build.image import GuestImage
from ..build.kernel import Kernel
from ..core.errors import TestbedError
from ..vm import guest_shell
from ..vm.accel import AccelChoice
from . import topology as topology_mod
from .deployment import Deployment
from .fabric import _process_start, claim_run_dir
from .supervisor import _SAY, CONTROL, LOG, STATE, Supervisor, UpRun, _Handler, _Server


def _state(deployment: Deployment, spec: dict) -> UpRun:
    vms = {vm.name: [c.name for c in vm.containers] for vm in deployment.topology.vms}
    return UpRun(run_id=deployment.run_id, pid=os.getpid(), pid_start=str(_process_start(os.getpid())),
                 topology=deployment.topology.name, kernel=f"{spec['kernel']['variant']} {spec['kernel']['release']}",
                 accel=spec["accel"]["accel"], started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                 describe=deployment.describe(agent_free=False), vms=vms)


def _log_to(path: Path) -> None:
    """stdout and stderr go to the run's log from here on."""
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _deployment_of(spec: dict) -> Deployment:
    """The deployment `up` asked for, not yet up."""
    k, i = spec["kernel"], spec["image"]
    return Deployment(topology_mod.load(spec["topology"]).with_kernel_args(tuple(spec.get("kernel_args", ()))),
                      Kernel(Path(k["bzimage"]), k["release"], k["variant"]),
                      GuestImage(Path(i["root"]), i["key"], {}, True), AccelChoice(**spec["accel"]),
                      run_id=spec["run_id"], boot_timeout=float(spec["boot_timeout"]), shell_ports=True)


def _record_degraded(run_dir: Path, degraded: dict[str, str]) -> None:
    state = json.loads((run_dir / STATE).read_text())
    state["degraded"] = degraded
    (run_dir / f".{STATE}").write_text(json.dumps(state, indent=2) + "\n")
    os.replace(run_dir / f".{STATE}", run_dir / STATE)


def _say_why(exc: BaseException, say) -> None:
    """Tell `up` why coming up failed: one error line, with the trace for a bug."""
    if isinstance(exc, KeyboardInterrupt):
        say("error interrupted while coming up; everything it had started was stopped")
    elif isinstance(exc, TestbedError):
        say(f"error {exc}")
    else:
        for line in traceback.format_exc().splitlines():
            say(f"trace {line}")
        say(f"error supervisor: {type(exc).__name__}: {exc}")


def serve(spec: dict, report) -> int:
    """The supervisor's life: bring the topology up, serve, take it down."""
    def say(line: str) -> None:
        report.write(f"{_SAY}{line}\n")
        report.flush()

    run_dir = claim_run_dir(spec["run_id"])
    _log_to(run_dir / LOG)
    serving = threading.Event()
    supervisor: Supervisor | None = None

    def on_signal(signum, frame) -> None:
        if not serving.is_set():
            raise KeyboardInterrupt  # still coming up: abort, and the deployment cleans up
        if supervisor is not None:
            supervisor.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    deployment: Deployment | None = None
    server = None
    try:
        deployment = _deployment_of(spec)
        supervisor = Supervisor(deployment, on_change=lambda degraded: _record_degraded(run_dir, degraded))
        say(f"phase booting {len(deployment.topology.vms)} VMs and laying out the overlay")
        deployment.__enter__()
        say("phase starting the shell consoles")
        for vm in deployment.machines.values():
            vm.run(guest_shell.start_script(), timeout=30, check=True)
        server = _Server(str(run_dir / CONTROL), _Handler)
        server.supervisor = supervisor  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
        state = json.dumps(asdict(_state(deployment, spec)), indent=2) + "\n"
        (run_dir / f".{STATE}").write_text(state)
        os.replace(run_dir / f".{STATE}", run_dir / STATE)
        serving.set()
        threading.Thread(target=supervisor.watch, name="watch", daemon=True).start()
        say("ready")
        report.close()
        supervisor.stopping.wait()
        return 0
    except BaseException as exc:
        if not report.closed:
            _say_why(exc, say)
        return 1
    finally:
        _teardown(server, deployment, run_dir)


def _teardown(server, deployment: Deployment | None, run_dir: Path) -> None:
    """Stop serving, take the deployment down, remove the run directory; signals wait meanwhile."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # teardown must not be interrupted half way
    if server is not None:
        server.shutdown()
        server.server_close()
    if deployment is not None:
        deployment.down()
    shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    report = os.fdopen(os.dup(1), "w")  # the pipe to `up`; stdout itself goes to the log
    return serve(json.loads(argv[0]), report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
