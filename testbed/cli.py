"""`prism-testbed`: the testbed's pieces from the command line.

Errors the user can fix are one line (the input and what is wrong with
it); --verbose shows the traceback as well.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import traceback
from pathlib import Path

from rich.table import Table

from . import accel as accel_mod
from .cache import Store, cache_root
from .errors import TestbedError
from .fabric import Fabric, new_run_id, runtime_dir
from .image import build_image, load_spec
from .kernel import obtain
from .machine import Machine
from .progress import console
from .qemu_cmd import MachineSpec, NicSpec


def cmd_kernel_build(args: argparse.Namespace) -> int:
    for selector in args.variants or ["prism"]:
        kernel = obtain(selector, args.kernel_src, args.source)
        console.print(f"kernel {kernel.describe()}")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    image = build_image(load_spec(args.name))
    console.print(f"image {image.key}: {image.root} ({'cache hit' if image.cache_hit else 'built'})")
    return 0


def boot_and_run(kernel, image, choice: accel_mod.AccelChoice, command: str, timeout: float = 60.0,
                 vcpus: int = 2, memory: int = 512, queues: int = 2):
    """Boot one VM on its own fabric, run one command; (result, boot seconds)."""
    run_id = new_run_id()
    with Fabric(run_id) as fabric:
        tap = fabric.add_tap(queues)
        spec = MachineSpec(name="vm", kernel=kernel.bzimage, image=image.root, vcpus=vcpus, memory_mib=memory,
                           accel=choice.accel, netns=fabric.netns,
                           nics=(NicSpec(tap=tap, mac="52:54:00:12:34:01", queues=queues, vhost=choice.vhost),))
        try:
            with Machine(spec, runtime_dir(run_id) / "vm") as vm:
                outcome = vm.run(command, timeout=timeout), vm.boot_seconds
        except TestbedError:
            console.print(f"[dim]console and QEMU logs kept in {runtime_dir(run_id) / 'vm'}[/]")
            raise
        shutil.rmtree(runtime_dir(run_id), ignore_errors=True)
        return outcome


def cmd_run(args: argparse.Namespace) -> int:
    """Boot one VM, run one command in it, print its output, stop the VM."""
    kernel = obtain(args.kernel, args.kernel_src, args.source)
    image = build_image(load_spec())
    choice = accel_mod.choose(args.accel, kernel.bzimage)
    command = shlex.join(args.guest_command) if args.guest_command else "uname -a"
    result, boot = boot_and_run(kernel, image, choice, command, args.timeout, args.vcpus, args.memory, args.queues)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    console.print(f"[dim]{kernel.release}, {choice.accel} (vhost {'on' if choice.vhost else 'off'}): "
                  f"boot to first command {boot:.2f}s, exit {result.exit_code}[/]")
    return result.exit_code


def cmd_experiment(args: argparse.Namespace) -> int:
    """The main job: the mix unloaded and loaded on each kernel (and PRISM mode), then the report."""
    from .experiment import ExperimentPlan, publish, run_experiment

    plan = ExperimentPlan(kernels=args.kernels, mix=args.mix, prism_settings=args.prism, accel=args.accel,
                          source=args.source, results=args.results, repeat=args.repeat)
    result = run_experiment(plan)
    publish(result)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Merge run records (files or directories) into one table, comparison and plot."""
    from . import report

    records = report.load_records(args.paths)
    if args.markdown:
        sys.stdout.write(report.markdown(records))
    else:
        for table in report.rich_tables(records):
            console.print(table)
    if args.plot:
        report.cdf_plot(records, args.plot)
        console.print(f"plot: {args.plot}", highlight=False)
    return 0


def cmd_cache_list(args: argparse.Namespace) -> int:
    table = Table(title=f"cache: {cache_root()}")
    for column in ("kind", "key", "what", "built"):
        table.add_column(column)
    for kind in ("kernels", "images"):
        for entry in Store(kind).entries():
            try:
                meta = entry.metadata()
            except (OSError, ValueError):
                meta = {}
            what = meta.get("release") or f"{meta.get('size_mib', '?')} MiB"
            table.add_row(kind, entry.key, str(what), str(meta.get("built_at", "?")))
    console.print(table)
    return 0


def cmd_accel(args: argparse.Namespace) -> int:
    kernel = obtain(args.kernel, None, args.source)
    choice = accel_mod.choose(args.accel, kernel.bzimage)
    print(json.dumps(choice.as_dict(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="prism-testbed", description=__doc__.splitlines()[0])
    top.add_argument("--verbose", action="store_true", help="show tracebacks")
    sub = top.add_subparsers(dest="command", required=True)

    kernel = sub.add_parser("kernel", help="kernels").add_subparsers(dest="action", required=True)
    build = kernel.add_parser("build", help="build (or find in the cache) kernel variants")
    build.add_argument("variants", nargs="*", metavar="VARIANT", help="variants from kernel-config/ (default: prism)")
    build.add_argument("--kernel-src", type=Path, help="build this local tree in place instead")
    build.add_argument("--source", help="source name from kernel-config/kernel.toml")
    build.set_defaults(func=cmd_kernel_build)

    image = sub.add_parser("image", help="guest images").add_subparsers(dest="action", required=True)
    ibuild = image.add_parser("build", help="build (or find in the cache) the guest image")
    ibuild.add_argument("name", nargs="?", default="base")
    ibuild.set_defaults(func=cmd_image_build)

    run = sub.add_parser("run", help="boot a VM, run a command in it, stop it")
    run.add_argument("--kernel", default="prism", help="variant or bzImage path (default: prism)")
    run.add_argument("--kernel-src", type=Path)
    run.add_argument("--source")
    run.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    run.add_argument("--vcpus", type=int, default=2)
    run.add_argument("--memory", type=int, default=512, help="MiB")
    run.add_argument("--queues", type=int, default=2)
    run.add_argument("--timeout", type=float, default=60.0)
    run.add_argument("guest_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                     help="command for the guest (default: uname -a)")
    run.set_defaults(func=cmd_run)

    exp = sub.add_parser("experiment", help="the main job: prism vs vanilla")
    exp.add_argument("--kernels", nargs="+", default=["vanilla", "prism"])
    exp.add_argument("--mix", default="overlay-flood", help="mix from cases/mixes/ or a path")
    exp.add_argument("--prism", nargs="+", default=["pseudo-sync", "sync", "sync+split"], metavar="MODE[+split]",
                     help="PRISM settings to measure on PRISM kernels")
    exp.add_argument("--repeat", type=int, default=1, help="runs per condition")
    exp.add_argument("--source")
    exp.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    exp.add_argument("--results", type=Path, default=Path("results"))
    exp.set_defaults(func=cmd_experiment)

    rep = sub.add_parser("report", help="merge run records into one comparison")
    rep.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="result directories or record files")
    rep.add_argument("--markdown", action="store_true", help="print markdown (e.g. for a CI job summary)")
    rep.add_argument("--plot", type=Path, help="also write a CDF plot (PNG) here")
    rep.set_defaults(func=cmd_report)

    cache = sub.add_parser("cache", help="the build cache").add_subparsers(dest="action", required=True)
    cache.add_parser("list", help="list cached kernels and images").set_defaults(func=cmd_cache_list)

    acc = sub.add_parser("accel", help="which accelerator and vhost a run would use, and why")
    acc.add_argument("--kernel", default="prism")
    acc.add_argument("--source")
    acc.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    acc.set_defaults(func=cmd_accel)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "guest_command", None) and args.guest_command[:1] == ["--"]:
        args.guest_command = args.guest_command[1:]
    try:
        return args.func(args)
    except TestbedError as exc:
        if args.verbose:
            traceback.print_exc()
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
