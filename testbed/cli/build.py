"""`prism-testbed kernel|image|run|accel`: build things, boot one VM."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from ..build.image import build_image, load_spec
from ..build.kernel import obtain
from ..build.kernel_spec import load_catalog
from ..build.series_check import check_series
from ..core.errors import TestbedError
from ..core.progress import console
from ..net.fabric import Fabric, new_run_id, runtime_dir
from ..vm import accel as accel_mod
from ..vm.machine import Machine
from ..vm.qemu_cmd import MachineSpec, NicSpec, kernel_args
from .argtypes import positive_int, positive_seconds


def cmd_kernel_build(args: argparse.Namespace) -> int:
    for selector in args.variants or ["prism"]:
        kernel = obtain(selector, args.kernel_src, args.source)
        console.print(f"kernel {kernel.describe()}")
    return 0


def cmd_kernel_check_series(args: argparse.Namespace) -> int:
    """Apply, build and checkpatch each patch of a variant's series in turn; 1 if any fails."""
    catalog = load_catalog()
    checks, log = check_series(catalog.variant(args.variant), catalog.source(args.source))
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
        console.print(f"{status} {check.patch}", highlight=False)
        for finding in check.checkpatch:
            console.print(f"     checkpatch: {finding}", markup=False, highlight=False)
        for config, error in check.broken:
            console.print(f"     does not build ({config}): {error}", markup=False, highlight=False)
    failed = [c.patch for c in checks if not c.ok]
    console.print(f"{len(checks) - len(failed)} of {len(checks)} patches apply, build (the variant's config and a "
                  f"uniprocessor one) and pass checkpatch; build log {log}", highlight=False)
    return 1 if failed else 0


def cmd_image_build(args: argparse.Namespace) -> int:
    image = build_image(load_spec(args.name))
    console.print(f"image {image.key}: {image.root} ({'cache hit' if image.cache_hit else 'built'})")
    return 0


def boot_and_run(kernel, image, choice: accel_mod.AccelChoice, command: str, timeout: float = 60.0,
                 vcpus: int = 2, memory: int = 512, queues: int = 2, append: tuple[str, ...] = ()):
    """Boot one VM on its own fabric, run one command; (result, boot seconds)."""
    run_id = new_run_id()
    with Fabric(run_id) as fabric:
        tap = fabric.add_tap(queues)
        spec = MachineSpec(name="vm", kernel=kernel.bzimage, image=image.root, vcpus=vcpus, memory_mib=memory,
                           accel=choice.accel, netns=fabric.netns, append=append,
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
    result, boot = boot_and_run(kernel, image, choice, command, args.timeout, args.vcpus, args.memory, args.queues,
                                kernel_args(args.append or (), "run --append"))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    console.print(f"[dim]{kernel.release}, {choice.accel} (vhost {'on' if choice.vhost else 'off'}): "
                  f"boot to first command {boot:.2f}s, exit {result.exit_code}[/]")
    return result.exit_code


def cmd_accel(args: argparse.Namespace) -> int:
    kernel = obtain(args.kernel, None, args.source)
    choice = accel_mod.choose(args.accel, kernel.bzimage)
    print(json.dumps(choice.as_dict(), indent=2))
    return 0


def add_parsers(sub) -> None:
    kernel = sub.add_parser("kernel", help="kernels").add_subparsers(dest="action", required=True)
    build = kernel.add_parser("build", help="build (or find in the cache) kernel variants")
    build.add_argument("variants", nargs="*", metavar="VARIANT", help="variants from kernel-config/ (default: prism)")
    build.add_argument("--kernel-src", type=Path, help="build this local tree in place instead")
    build.add_argument("--source", help="source name from kernel-config/kernel.toml")
    build.set_defaults(func=cmd_kernel_build)
    series = kernel.add_parser("check-series", help="apply, build and checkpatch each patch of a series in turn")
    series.add_argument("variant", nargs="?", default="prism", help="variant whose series to check (default: prism)")
    series.add_argument("--source", help="source name from kernel-config/kernel.toml")
    series.set_defaults(func=cmd_kernel_check_series)

    image = sub.add_parser("image", help="guest images").add_subparsers(dest="action", required=True)
    ibuild = image.add_parser("build", help="build (or find in the cache) the guest image")
    ibuild.add_argument("name", nargs="?", default="base")
    ibuild.set_defaults(func=cmd_image_build)

    run = sub.add_parser("run", help="boot a VM, run a command in it, stop it")
    run.add_argument("--kernel", default="prism", help="variant or bzImage path (default: prism)")
    run.add_argument("--kernel-src", type=Path)
    run.add_argument("--source")
    run.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    run.add_argument("--vcpus", type=positive_int, default=2)
    run.add_argument("--memory", type=positive_int, default=512, help="MiB")
    run.add_argument("--queues", type=positive_int, default=2)
    run.add_argument("--timeout", type=positive_seconds, default=60.0)
    run.add_argument("--append", metavar="ARGS", help="extra kernel arguments, e.g. 'panic=5 sysrq_always_enabled'")
    run.add_argument("guest_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                     help="command for the guest (default: uname -a)")
    run.set_defaults(func=cmd_run)

    acc = sub.add_parser("accel", help="which accelerator and vhost a run would use, and why")
    acc.add_argument("--kernel", default="prism")
    acc.add_argument("--source")
    acc.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    acc.set_defaults(func=cmd_accel)
