"""Foundation benchmark: build, cache and boot figures. Prints; asserts nothing.

    .venv/bin/python benchmarks/foundation.py [--cold] [--tree] [--anchor] [--boots N]

Always: kernel cache-hit lookup, image cache-hit lookup, boot to first guest
command (median of N). --cold: a kernel and an image built from nothing in
a scratch cache (minutes). --tree: a local tree (a copy of the pristine
source, kept in the cache between runs) rebuilt after touching
net/core/dev.c. --anchor: virtme-ng booting the same kernel to the same
command under TCG, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.build.image import build_image, load_spec
from testbed.build.kernel import build_local_tree, obtain
from testbed.build.kernel_source import pristine_tree
from testbed.build.kernel_spec import load_catalog, resolve
from testbed.cli import boot_and_run
from testbed.core.cache import cache_root
from testbed.core.progress import Step, console
from testbed.vm import accel as accel_mod

BOOT_COMMAND = "uname -r"


@contextmanager
def scratch_cache():
    """A cache that starts empty, for cold figures; removed afterwards."""
    old = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="prism-bench-cache-", dir=cache_root().parent) as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = old


def timed(fn, *args):
    start = time.monotonic()
    value = fn(*args)
    return time.monotonic() - start, value


def median_of(n: int, fn, *args) -> tuple[float, list[float]]:
    samples = [timed(fn, *args)[0] for _ in range(n)]
    return statistics.median(samples), samples


def boot_samples(n: int, kernel, image, choice) -> tuple[list[float], list[float]]:
    """n fresh VMs: (QEMU launch to the first command's answer, the whole cycle).

    The cycle adds what a one-off command costs around the VM: making the
    run's namespace and tap, and stopping QEMU and removing them afterwards.
    """
    first, cycle = [], []
    for _ in range(n):
        start = time.monotonic()
        result, boot = boot_and_run(kernel, image, choice, BOOT_COMMAND)
        result.check()
        cycle.append(time.monotonic() - start)
        first.append(boot + result.seconds)
    return first, cycle


def tree_rebuild() -> dict:
    """Incremental rebuild of a --kernel-src tree after touching net/core/dev.c."""
    catalog = load_catalog()
    spec = resolve(catalog, "vanilla")
    pristine = pristine_tree(spec.source.tarball, spec.source_sha256, Step("bench"))
    tree = cache_root() / "bench" / f"tree-{spec.source_sha256[:12]}"
    if not tree.is_dir():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(pristine), str(tree)], check=True)
    first, _ = timed(build_local_tree, tree, catalog.variant("vanilla"))
    (tree / "net/core/dev.c").touch()
    again, kernel = timed(build_local_tree, tree, catalog.variant("vanilla"))
    log = Path(kernel.metadata["log"]).read_text()
    compile_part = log[log.rfind("\n$ make"):]  # the last command logged is make bzImage
    rebuilt = len(re.findall(r"^\s+CC\s", compile_part, re.MULTILINE))
    return {"tree": str(tree), "build_before_touch_s": round(first, 1), "rebuild_after_touch_s": round(again, 1),
            "objects_recompiled": rebuilt}


def vng_anchor(n: int, kernel) -> dict:
    """virtme-ng booting the same bzImage to the same command, under TCG.

    The guest's root is the host's own filesystem over 9p (read-only, with
    tmpfs overlays); the command's output comes back over virtio-serial ports
    that the guest finds through udev, so the host needs the udev package
    (systemd-udevd): without it virtme-ng-init falls back to the console and
    vng exits 255 with no output.
    """
    bindir = Path(sys.executable).parent
    vng = bindir / "vng"
    if not vng.exists():
        return {"error": "virtme-ng is not installed: .venv/bin/pip install virtme-ng"}
    # --disable-kvm: TCG, as KVM is unusable here; --run BZIMAGE: boot that prebuilt kernel with the host's
    # root filesystem; --user root: run the command as root; --exec: run one command, then power off.
    argv = [str(vng), "--disable-kvm", "--run", str(kernel.bzimage), "--user", "root", "--exec", BOOT_COMMAND]
    # vng starts its helper virtme-run by name through a shell, so the venv's bin/ must be on PATH.
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    samples = []
    for _ in range(n):
        start = time.monotonic()
        # vng -> sh -> virtme-run, which execs QEMU: a session of its own lets a timeout end all of them.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"error": "vng did not exit within 300 s", "argv": argv}
        took = time.monotonic() - start
        if proc.returncode != 0 or kernel.release not in stdout:
            tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-1]
            if proc.returncode == 255 and not stderr.strip() and not any(
                    Path(p).exists() for p in ("/usr/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd")):
                tail = "no output: the host lacks systemd-udevd (apt-get install udev)"
            return {"error": f"vng exited {proc.returncode}: {tail}", "argv": argv}
        samples.append(took)
    return {"median_s": round(statistics.median(samples), 2), "samples_s": [round(s, 2) for s in samples],
            "argv": argv}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also build a kernel and an image from nothing")
    parser.add_argument("--tree", action="store_true", help="also measure an incremental local-tree rebuild")
    parser.add_argument("--anchor", action="store_true", help="also boot the kernel with virtme-ng")
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("results/bench-foundation.json"))
    args = parser.parse_args()

    figures: dict = {}
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def keep(key: str, value) -> None:
        """Record a figure as soon as it is measured, so a long run that dies keeps the rest."""
        figures[key] = value
        console.print(f"{key}: {json.dumps(value, default=str)}")
        args.output.write_text(json.dumps(figures, indent=2, default=str) + "\n")

    kernel = obtain("vanilla")
    image = build_image(load_spec())
    keep("kernel_build_recorded_s", kernel.metadata.get("build_seconds"))
    keep("kernel_cache_hit_s", median_of(5, obtain, "vanilla")[0])
    keep("image_cache_hit_s", median_of(5, lambda: build_image(load_spec()))[0])
    choice = accel_mod.choose("auto", kernel.bzimage)
    keep("accel", choice.as_dict())
    first, cycle = boot_samples(args.boots, kernel, image, choice)
    keep("boot_to_first_command_samples_s", [round(s, 2) for s in first])
    keep("boot_to_first_command_median_s", statistics.median(first))
    keep("fabric_boot_command_teardown_median_s", statistics.median(cycle))
    if args.anchor:
        keep("virtme_ng", vng_anchor(args.boots, kernel))
    if args.tree:
        keep("local_tree", tree_rebuild())
    if args.cold:
        with scratch_cache():
            keep("kernel_cold_build_s", timed(obtain, "vanilla")[0])
            keep("image_cold_build_s", timed(lambda: build_image(load_spec()))[0])

    table = Table(title=f"foundation benchmark ({choice.accel}, vhost {'on' if choice.vhost else 'off'})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.3f}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        table.add_row(key, str(value))
    console.print(table)
    console.print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
