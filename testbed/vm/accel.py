"""Choose the accelerator and vhost by trying them, not by looking at /dev.

/dev/kvm can open and still be unusable: on some hosts it belongs to a
paravirtual hypervisor on which a stock kernel crawls and then dies on an
emulation failure. So `auto` boots the real kernel under KVM with no root
device and waits for it to reach the point where it panics for want of one:
a kernel that gets there in seconds runs fine under KVM. The answer is kept
per host boot, QEMU build and kernel, so a test session probes once.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.cache import atomic_write_text, cache_root, sha256_bytes, sha256_file
from ..core.errors import ConfigError
from .qemu_cmd import qemu_binary

PROBE_TIMEOUT = 15.0
_REACHED = ("VFS: Unable to mount root", "Kernel panic - not syncing")


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator and vhost setting a run uses, and why: every result records it."""

    accel: str
    vhost: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def vhost_net_usable() -> bool:
    return os.access("/dev/vhost-net", os.R_OK | os.W_OK)


def _probe_key(kernel: Path) -> str:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    qemu = qemu_binary()
    stamp = f"{boot_id}|{qemu}|{os.stat(qemu).st_mtime_ns}|{sha256_file(kernel)}"
    return sha256_bytes(stamp.encode())[:24]


def probe_kvm(kernel: Path, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot kernel under KVM to its no-root panic; (usable, why)."""
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not readable and writable by this user"
    memo = cache_root() / "accel-probe" / f"{_probe_key(kernel)}.json"
    try:
        saved = json.loads(memo.read_text())
        return bool(saved["usable"]), str(saved["why"])
    except (OSError, ValueError, KeyError):
        pass
    usable, why = _run_probe(kernel, timeout)
    atomic_write_text(memo, json.dumps({"usable": usable, "why": why}) + "\n")
    return usable, why


def _run_probe(kernel: Path, timeout: float) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="prism-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [qemu_binary(), "-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "256", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", str(kernel), "-append", "console=ttyS0 root=/dev/nonexistent panic=-1 loglevel=5",
                "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con"]
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False, f"a KVM guest did not reach its root mount within {timeout:.0f}s"
        took = time.monotonic() - start
        text = console.read_text(errors="replace") if console.exists() else ""
        if any(marker in text for marker in _REACHED):
            return True, f"a KVM guest booted to its root mount in {took:.1f}s"
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"a KVM guest failed: {last[:160]}"


def choose(requested: str, kernel: Path) -> AccelChoice:
    """Resolve --accel auto|kvm|tcg into what the run will use."""
    if requested not in ("auto", "kvm", "tcg"):
        raise ConfigError(f"--accel {requested}: must be auto, kvm or tcg")
    vhost_dev = vhost_net_usable()
    if requested == "tcg":
        return AccelChoice("tcg", False, "forced by --accel tcg (vhost needs KVM)")
    if requested == "kvm":
        return AccelChoice("kvm", vhost_dev, "forced by --accel kvm" + ("" if vhost_dev else "; no /dev/vhost-net"))
    usable, why = probe_kvm(kernel)
    if usable:
        return AccelChoice("kvm", vhost_dev, why + ("" if vhost_dev else "; no /dev/vhost-net, vhost off"))
    return AccelChoice("tcg", False, f"KVM unusable ({why}); TCG, vhost off")
