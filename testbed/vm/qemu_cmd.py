"""What one VM is (dataclasses) and the QEMU command line for it (pure).

Kept free of processes and sockets so the command line can be checked in
unit tests and printed as a reproducer.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError

QEMU = "qemu-system-x86_64"
ACCELS = ("kvm", "tcg")
AGENT_PORT_ID = "qga-port"
SHELL_PORT_NAME = "org.prism-testbed.shell"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


@dataclass(frozen=True)
class NicSpec:
    """A virtio-net NIC backed by a multiqueue tap on the host."""

    tap: str
    mac: str
    queues: int = 1
    speed_mbps: int = 100_000
    vhost: bool = False
    # virtio-net's rx ring, 256 to 1024 (QEMU's default: 256). Measured under overload: 1024
    # turned the tap's rare drops into gro_cells drops (after a host hiccup the NIC poll hands
    # gro_cells up to 2048 packets at once) and lengthened the FIFO before the guest: six of
    # 26 loaded runs missed the regime, against none of 40 with 256. So the default stays.
    rx_queue_size: int = 256

    def __post_init__(self) -> None:
        if self.rx_queue_size not in (256, 512, 1024):
            raise ConfigError(f"NIC {self.tap}: rx_queue_size {self.rx_queue_size} must be 256, 512 or 1024")
        if not 1 <= self.queues <= 64:
            raise ConfigError(f"NIC {self.tap}: queues {self.queues} must be between 1 and 64")
        if not _MAC.fullmatch(self.mac):
            raise ConfigError(f"NIC {self.tap}: MAC {self.mac!r} is not of the form 52:54:00:xx:xx:xx")
        if self.speed_mbps <= 0:
            raise ConfigError(f"NIC {self.tap}: speed {self.speed_mbps} must be positive (Mbit/s)")

    @property
    def vectors(self) -> int:
        """MSI-X vectors: one per rx and tx queue, config, and control."""
        return 2 * self.queues + 2


def kernel_args(value: object, where: str) -> tuple[str, ...]:
    """Extra kernel command-line arguments given as one string ("panic=5 quiet") or a list of them.

    A string is split like a shell would, so it is never taken as a sequence
    of characters; anything else, or an argument with a newline, is an error.
    """
    if isinstance(value, str):
        try:
            args = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: kernel arguments {value!r}: {exc}") from None
    elif isinstance(value, (list, tuple)) and all(isinstance(a, str) for a in value):
        args = list(value)
    else:
        raise ConfigError(f"{where}: kernel arguments must be a string or a list of strings, "
                          f"not {type(value).__name__}")
    bad = next((a for a in args if not a or any(c in a for c in "\n\r\0")), None)
    if bad is not None:
        raise ConfigError(f"{where}: kernel argument {bad!r} is empty or holds a line break")
    return tuple(args)


@dataclass(frozen=True)
class MachineSpec:
    """Everything that decides how one QEMU process is started."""

    name: str
    kernel: Path
    image: Path
    vcpus: int = 2
    memory_mib: int = 512
    accel: str = "tcg"
    nics: tuple[NicSpec, ...] = ()
    netns: str | None = None
    append: tuple[str, ...] = field(default_factory=tuple)
    shell_port: bool = False  # a virtio console (the guest's hvc0) for `prism-testbed shell`

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"machine name {self.name!r}: use lower-case letters, digits and '-' (max 31)")
        if self.accel not in ACCELS:
            raise ConfigError(f"machine {self.name}: accel {self.accel!r} must be one of {', '.join(ACCELS)}")
        if not 1 <= self.vcpus <= 64:
            raise ConfigError(f"machine {self.name}: vcpus {self.vcpus} must be between 1 and 64")
        if self.memory_mib < 128:
            raise ConfigError(f"machine {self.name}: memory {self.memory_mib} MiB is below 128 MiB")
        if isinstance(self.append, str) or not all(isinstance(a, str) for a in self.append):
            raise ConfigError(f"machine {self.name}: append must be a tuple of arguments (see kernel_args)")
        for nic in self.nics:
            if nic.vhost and self.accel != "kvm":
                raise ConfigError(f"machine {self.name}: vhost on NIC {nic.tap} needs accel kvm")

    def kernel_cmdline(self) -> str:
        base = [
            "console=ttyS0", "root=/dev/vda", "rootfstype=ext4", "ro",
            "init=/usr/lib/prism-testbed/init",
            # warnings and worse reach the console (so splats are seen); info does not
            "loglevel=5", "panic=-1", f"prism.hostname={self.name}",
            # Boot time under TCG: route PCI interrupts without ACPI's AML (every
            # device is MSI-X anyway), probe one UART, skip the PS/2 devices.
            # Together these take an emulated boot from ~2.8 s to ~1.1 s of guest time.
            "acpi=noirq", "8250.nr_uarts=1", "i8042.noaux", "i8042.nokbd",
        ]
        return " ".join([*base, *self.append])


@dataclass(frozen=True)
class RunFiles:
    """Where one machine's sockets and logs live (its run directory)."""

    dir: Path

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def agent(self) -> Path:
        return self.dir / "qga.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"

    @property
    def shell(self) -> Path:
        return self.dir / "shell.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise ConfigError(f"{QEMU} not found: run tools/install-host-deps (Debian package qemu-system-x86)")
    return path


def build_argv(spec: MachineSpec, files: RunFiles, qemu: str = QEMU) -> list[str]:
    """The full command line that starts spec (inside its netns, if any)."""
    accel = ["-accel", "kvm", "-cpu", "host"] if spec.accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    argv = [
        qemu, "-name", f"{spec.name},debug-threads=on", "-machine", "pc", *accel,
        "-smp", str(spec.vcpus), "-m", str(spec.memory_mib),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-S",  # paused until QMP is connected, so no event can be missed
        "-kernel", str(spec.kernel), "-append", spec.kernel_cmdline(),
        "-drive", f"file={spec.image},if=none,id=root,format=raw,readonly=on",
        "-device", "virtio-blk-pci,drive=root",
        "-chardev", f"file,id=console,path={files.console}", "-serial", "chardev:console",
        "-chardev", f"socket,id=qmp,path={files.qmp},server=on,wait=off", "-mon", "chardev=qmp,mode=control",
        "-chardev", f"socket,id=qga,path={files.agent},server=on,wait=off",
        "-device", "virtio-serial-pci", "-device", f"virtserialport,chardev=qga,name=org.qemu.guest_agent.0,id={AGENT_PORT_ID}",
        "-pidfile", str(files.pidfile),
    ]
    if spec.shell_port:
        argv += ["-chardev", f"socket,id=shell,path={files.shell},server=on,wait=off",
                 "-device", f"virtconsole,chardev=shell,name={SHELL_PORT_NAME}"]
    for i, nic in enumerate(spec.nics):
        argv += [
            "-netdev", f"tap,id=net{i},ifname={nic.tap},script=no,downscript=no,queues={nic.queues},"
                       f"vhost={'on' if nic.vhost else 'off'}",
            "-device", f"virtio-net-pci,netdev=net{i},mac={nic.mac},mq=on,vectors={nic.vectors},"
                       f"speed={nic.speed_mbps},duplex=full,rx_queue_size={nic.rx_queue_size},romfile=",
        ]
    if spec.netns:
        argv = ["nsenter", f"--net=/run/netns/{spec.netns}", "--", *argv]
    return argv
