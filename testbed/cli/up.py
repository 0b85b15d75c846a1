"""`prism-testbed up|status|exec|shell|down`: a topology that stays up.

`up` hands the deployment to a detached supervisor (testbed.net.supervisor)
and returns once every VM and container is ready; the other commands find
the run under the runtime directory and talk to that supervisor.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..build.image import build_image, load_spec
from ..build.kernel import obtain
from ..core.errors import RunError
from ..core.progress import Step, console
from ..net import supervisor
from ..net import topology as topology_mod
from ..vm import accel as accel_mod
from ..vm import guest_shell
from ..vm.qemu_cmd import kernel_args
from .argtypes import positive_seconds


def topology_path(name_or_path: str) -> Path:
    """The topology file for a name from cases/topologies/ or a path, validated now."""
    topology_mod.load(name_or_path)  # a one-line error before anything starts
    path = Path(name_or_path)
    return path.resolve() if path.suffix else topology_mod.TOPOLOGY_DIR / f"{name_or_path}.toml"


def cmd_up(args: argparse.Namespace) -> int:
    path = topology_path(args.topology)
    kernel = obtain(args.kernel, args.kernel_src, args.source)
    image = build_image(load_spec())
    choice = accel_mod.choose(args.accel, kernel.bzimage)
    step = Step(f"up {Path(path).stem}")
    with step.phase("start the supervisor, boot, lay out the overlay"):
        run = supervisor.start(path, kernel, image, choice, args.boot_timeout, on_phase=step.update,
                               kernel_args=kernel_args(args.append or (), "up --append"))
    console.print(f"[green]up[/] in {step.elapsed():.1f}s: {run.topology}, kernel {run.kernel}, "
                  f"{choice.accel} ({choice.reason})")
    print(run.describe)
    console.print(f"[dim]shell: prism-testbed shell VM [CONTAINER]   run: prism-testbed exec VM [CONTAINER] -- CMD   "
                  f"stop: prism-testbed down {run.run_id}[/]", highlight=False)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    runs = supervisor.up_runs()
    if not runs:
        console.print("no `up` deployment is running")
        return 0
    table = Table(title="prism-testbed: deployments that are up")
    for column in ("run", "topology", "kernel", "accel", "since", "supervisor", "VMs (containers)"):
        table.add_column(column)
    for run in runs:
        vms = "; ".join(f"{vm} ({', '.join(cs) or '-'})" + (" [red]down[/]" if vm in run.degraded else "")
                        for vm, cs in run.vms.items())
        table.add_row(run.run_id, run.topology, run.kernel, run.accel, run.started,
                      f"{run.pid}" + ("" if run.alive() else " [red]dead[/]"), vms)
    console.print(table)
    for run in runs:
        for vm, what in run.degraded.items():
            console.print(f"[red]run {run.run_id} degraded[/]: vm {vm}: {escape(what)}", soft_wrap=True)
    return 0


def _target(run: supervisor.UpRun, vm: str, container: str | None) -> None:
    if vm not in run.vms:
        raise RunError(f"run {run.run_id}: no vm {vm!r} (has {', '.join(run.vms)})")
    if container is not None and container not in run.vms[vm]:
        where = run.vm_of(container)
        hint = f"it runs on vm {where}" if where else f"vm {vm} has {', '.join(run.vms[vm]) or 'none'}"
        raise RunError(f"run {run.run_id}: no container {container!r} on vm {vm} ({hint})")


def split_exec_words(words: list[str]) -> tuple[str, str | None, str]:
    """`VM [CONTAINER] -- COMMAND...` into (vm, container, command line)."""
    if "--" not in words:
        raise RunError("exec: give the command after `--`, e.g. prism-testbed exec client c1 -- ip addr")
    cut = words.index("--")
    target, argv = words[:cut], words[cut + 1:]
    if not 1 <= len(target) <= 2 or not argv:
        raise RunError("exec: usage is prism-testbed exec VM [CONTAINER] -- COMMAND")
    command = argv[0] if len(argv) == 1 else shlex.join(argv)  # one word: a shell line as given
    return target[0], (target[1] if len(target) == 2 else None), command


def cmd_exec(args: argparse.Namespace) -> int:
    vm, container, command = split_exec_words(args.words)
    run = supervisor.find_run(args.run)
    _target(run, vm, container)
    reply = supervisor.call(run, {"op": "exec", "vm": vm, "container": container, "command": command,
                                  "timeout": args.timeout}, timeout=args.timeout + 30)
    sys.stdout.write(reply["stdout"])
    sys.stderr.write(reply["stderr"])
    return int(reply["exit_code"])


def cmd_shell(args: argparse.Namespace) -> int:
    run = supervisor.find_run(args.run)
    _target(run, args.vm, args.container)
    return guest_shell.attach(run.dir / args.vm / "shell.sock", args.container,
                              lambda: supervisor.call(run, {"op": "shell-reset", "vm": args.vm}, timeout=60), args.vm)


def cmd_down(args: argparse.Namespace) -> int:
    runs = supervisor.up_runs() if args.all else [supervisor.find_run(args.run)]
    if args.all and not runs:
        console.print("no `up` deployment is running")
    for run in runs:
        with console.status(f"taking run {run.run_id} ({run.topology}) down"):
            how = supervisor.stop(run)
        console.print(f"run {run.run_id} ({run.topology}) down: {how}; its QEMUs, netns and {run.dir} are gone")
    return 0


def add_parsers(sub) -> None:
    up = sub.add_parser("up", help="boot a topology and leave it running (detached)")
    up.add_argument("topology", metavar="TOPOLOGY", help="a name from cases/topologies/ (two-vm, three-vm) or a path")
    up.add_argument("--kernel", default="prism", help="variant or bzImage path (default: prism)")
    up.add_argument("--kernel-src", type=Path, help="build this local tree in place and boot it")
    up.add_argument("--source", help="source name from kernel-config/kernel.toml")
    up.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    up.add_argument("--append", metavar="ARGS",
                    help="extra kernel arguments for every VM, e.g. 'panic=5 sysrq_always_enabled'")
    up.add_argument("--boot-timeout", type=positive_seconds, default=180.0, help="seconds per VM (default: 180)")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="list the deployments that are up")
    status.set_defaults(func=cmd_status)

    run_help = "the run id `up` printed (default: the only one running)"
    ex = sub.add_parser("exec", help="run one command in a VM or container of an `up` deployment",
                        usage="prism-testbed exec [--run RUN] [--timeout S] VM [CONTAINER] -- COMMAND...",
                        description="The command's output and exit status are the command's own. "
                                    "A single word after -- is a shell line: exec client -- 'ip -br a | grep UP'.")
    ex.add_argument("--run", help=run_help)
    ex.add_argument("--timeout", type=positive_seconds, default=60.0)
    ex.add_argument("words", nargs=argparse.REMAINDER, metavar="VM [CONTAINER] -- COMMAND")
    ex.set_defaults(func=cmd_exec)

    shell = sub.add_parser("shell", help="interactive shell in a VM (or a container in it) of an `up` deployment",
                           description="A shell on the VM's console port: exit or Ctrl-D ends it, Ctrl-] detaches. "
                                       "Piped input runs line by line and ends with the pipe.")
    shell.add_argument("vm", metavar="VM")
    shell.add_argument("container", metavar="CONTAINER", nargs="?")
    shell.add_argument("--run", help=run_help)
    shell.set_defaults(func=cmd_shell)

    down = sub.add_parser("down", help="stop an `up` deployment: its QEMUs, netns and run directory")
    down.add_argument("run", metavar="RUN", nargs="?", help=run_help)
    down.add_argument("--all", action="store_true", help="every `up` deployment")
    down.set_defaults(func=cmd_down)
