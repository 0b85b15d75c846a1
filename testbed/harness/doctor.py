"""What this host offers the testbed, checked one thing at a time.

Each check returns a `Check`: ok, warn (the testbed works, slower or with
less) or fail (a run cannot start), and one line saying why. Only a failed
*required* check makes `prism-testbed doctor` exit non-zero. KVM is judged
by the accelerator probe (a real boot, remembered per host boot), never by
/dev/kvm existing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core import cmd
from ..core.cache import Store, cache_root, tree_size
from ..core.cmd import CommandResult
from ..core.errors import CommandError, ConfigError
from ..net import fabric
from ..vm import accel as accel_mod
from ..vm import libvirt_machine
from ..vm.qemu_cmd import qemu_binary

GIB = 1 << 30
DISK_FAIL_GIB = 3  # a kernel build (source, objects) needs about this much
DISK_WARN_GIB = 10


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    required: bool = False

    @property
    def blocking(self) -> bool:
        return self.status == "fail" and self.required


def _run(argv: list[str]) -> CommandResult:
    """A probe command: its result whatever it did (a missing or hung tool is a failed probe, not a crash)."""
    try:
        return cmd.run(argv, timeout=30)
    except CommandError as exc:
        return CommandResult(" ".join(argv), 127, "", str(exc), 0.0)


def check_qemu() -> Check:
    try:
        binary = qemu_binary()
    except ConfigError as exc:
        return Check("QEMU", "fail", str(exc), required=True)
    out = _run([binary, "--version"])
    if out.exit_code != 0:
        return Check("QEMU", "fail", f"{binary} --version exited {out.exit_code}", required=True)
    return Check("QEMU", "ok", out.stdout.splitlines()[0].strip(), required=True)


def _probe_kernel() -> Path | None:
    """A cached kernel to probe KVM with (the probe boots a real kernel)."""
    for entry in Store("kernels").entries():
        if entry.file("bzImage").is_file():
            return entry.file("bzImage")
    return None


def check_kvm(probe: Callable[[Path], tuple[bool, str]] = accel_mod.probe_kvm) -> Check:
    if not os.path.exists("/dev/kvm"):
        return Check("KVM", "warn", "no /dev/kvm: runs use TCG (emulation, about 10x slower)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Check("KVM", "warn", "/dev/kvm is not readable and writable by this user: runs use TCG")
    kernel = _probe_kernel()
    if kernel is None:
        return Check("KVM", "warn", "/dev/kvm is there; whether it works is probed on the first run "
                                    "(no kernel is built yet to probe with)")
    usable, why = probe(kernel)
    if usable:
        return Check("KVM", "ok", why)
    return Check("KVM", "warn", f"{why}: runs use TCG")


def check_vhost() -> Check:
    if accel_mod.vhost_net_usable():
        return Check("vhost-net", "ok", "/dev/vhost-net is usable (used with KVM)")
    return Check("vhost-net", "warn", "no usable /dev/vhost-net: virtio-net runs in QEMU's userspace backend")


def check_tun() -> Check:
    if os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return Check("/dev/net/tun", "ok", "taps can be created", required=True)
    return Check("/dev/net/tun", "fail", "/dev/net/tun is missing or not writable: VMs have no network",
                 required=True)


def check_netns() -> Check:
    name = f"ptdoctor-{os.getpid()}"  # not prism-*: that prefix is the runs' own
    made = _run(["ip", "netns", "add", name])
    if made.exit_code != 0:
        return Check("network namespaces", "fail",
                     f"`ip netns add` failed: {made.stderr.strip() or 'no output'} (needs root or CAP_SYS_ADMIN)",
                     required=True)
    gone = _run(["ip", "netns", "del", name])
    if gone.exit_code != 0:
        return Check("network namespaces", "warn", f"created {name} but could not delete it: {gone.stderr.strip()}",
                     required=True)
    return Check("network namespaces", "ok", "created and deleted a test namespace", required=True)


def check_libvirt(probe: Callable[[], tuple[bool, str]] = libvirt_machine.probe) -> Check:
    """The optional backend: said once here, with the reason, rather than by every case that would use it."""
    usable, why = probe()
    if usable:
        return Check("libvirt backend", "ok", why)
    return Check("libvirt backend", "warn", f"--backend libvirt cannot run here: {why}")


def check_unrecorded() -> Check:
    found = fabric.unrecorded()
    if not found:
        return Check("foreign leftovers", "ok", "no prism-* namespace or pt* tap without a run record")
    return Check("foreign leftovers", "warn",
                 f"{', '.join(found)}: named like the testbed's but no run recorded them; left alone "
                 "(delete them yourself if they are yours)")


def check_ccache() -> Check:
    path = shutil.which("ccache")
    if path is None:
        return Check("ccache", "warn", "not installed: every kernel build compiles from scratch (~15 min on 2 cores)")
    version = _run([path, "--version"]).stdout.splitlines()[:1]
    return Check("ccache", "ok", f"{version[0] if version else path}; cache in {cache_root() / 'ccache'}")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk() -> Check:
    root = cache_root()
    free = shutil.disk_usage(_existing(root)).free
    detail = f"{free / GIB:.1f} GiB free under {root}"
    if free < DISK_FAIL_GIB * GIB:
        return Check("disk space", "fail", f"{detail}: a kernel build needs about {DISK_FAIL_GIB} GiB", required=True)
    if free < DISK_WARN_GIB * GIB:
        return Check("disk space", "warn", f"{detail}: tight for two kernels, images and results")
    return Check("disk space", "ok", detail)


def _unwritable(root: Path) -> str | None:
    """Why nothing can be written under root (or the directory it would be made in), or None."""
    where = _existing(root)
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".doctor-"):
            pass
    except OSError as exc:
        return f"{where}: {exc.strerror}"
    return None


def check_cache_size() -> Check:
    root = cache_root()
    if (why := _unwritable(root)) is not None:
        return Check("cache", "fail", f"cannot write under {root} ({why}): nothing can be built or cached; "
                                      "XDG_CACHE_HOME moves the cache", required=True)
    if not root.is_dir():
        return Check("cache", "ok", f"{root} is empty (nothing built yet)")
    sizes = {child.name: tree_size(child) for child in root.iterdir()}  # one walk, split by top directory
    total = sum(sizes.values())
    parts = {kind: sizes.get(kind, 0) for kind in ("kernels", "images", "sources", "ccache")}
    detail = ", ".join(f"{kind} {size / GIB:.2f}" for kind, size in parts.items())
    return Check("cache", "ok", f"{total / GIB:.2f} GiB in {root} ({detail} GiB); `prism-testbed cache clean` frees it")


CHECKS: tuple[Callable[[], Check], ...] = (check_qemu, check_kvm, check_vhost, check_tun, check_netns,
                                           check_libvirt, check_unrecorded, check_ccache, check_disk,
                                           check_cache_size)


def run_checks(checks=CHECKS) -> list[Check]:
    """Every check; one that crashes is reported as failed, not raised."""
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # a broken check must not hide the others
            name = check.__name__.removeprefix("check_")
            results.append(Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {exc}"))
    return results
