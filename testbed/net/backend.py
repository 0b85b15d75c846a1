"""Which program starts the VMs: QEMU directly (default) or libvirt.

The two differ in three places only, gathered here so Deployment and the
fixtures stay the same: where a NIC's tap is made (in the run's namespace,
or in the host's and moved in later), whether QEMU is started inside the
run's namespace, and which class owns a VM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..vm.libvirt_machine import DEFAULT_URI, LibvirtMachine
from ..vm.machine import Machine
from ..vm.machine_common import MachineCommon
from ..vm.qemu_cmd import MachineSpec
from .fabric import Fabric

BACKENDS = ("qemu", "libvirt")



@dataclass(frozen=True)
class Backend:
    """A backend and, for libvirt, the URI of the libvirtd that runs the domains."""

    name: str = "qemu"
    libvirt_uri: str = DEFAULT_URI

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ConfigError(f"--backend {self.name}: must be one of {', '.join(BACKENDS)}")

    @property
    def libvirt(self) -> bool:
        return self.name == "libvirt"

    def add_tap(self, fabric: Fabric, queues: int) -> str:
        """A tap for one NIC: libvirtd opens taps in the host's namespace, QEMU in the run's."""
        return fabric.add_host_tap(queues) if self.libvirt else fabric.add_tap(queues)

    def netns(self, fabric: Fabric) -> str | None:
        """The namespace QEMU itself is started in (nsenter); libvirtd starts it in its own."""
        return None if self.libvirt else fabric.netns

    def machine(self, spec: MachineSpec, run_dir: Path, boot_timeout: float, fabric: Fabric,
                run_id: str) -> MachineCommon:
        if self.libvirt:
            return LibvirtMachine(spec, run_dir, boot_timeout, uri=self.libvirt_uri,
                                  domain_name=f"prism-{run_id}-{spec.name}", fabric=fabric)
        return Machine(spec, run_dir, boot_timeout)

    def describe(self) -> str:
        return f"libvirt ({self.libvirt_uri})" if self.libvirt else "qemu (direct)"
