"""A topology brought up: fabric, VMs booted in parallel, overlay, containers.

One context manager owns everything a topology run creates; leaving it,
by return, exception or Ctrl-C, stops every QEMU, deletes the run's
namespace (and with it every tap and veth) and removes the run directory.
The backend (testbed.net.backend) decides who starts the VMs: QEMU directly or
libvirt; everything else is the same.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..build.image import GuestImage
from ..build.kernel import Kernel
from ..core import cmd
from ..core.cmd import CommandResult
from ..core.errors import FabricError
from ..vm.accel import AccelChoice
from ..vm.machine_common import MachineCommon
from ..vm.qemu_cmd import MachineSpec, NicSpec
from .backend import Backend
from .fabric import TRAFFIC_PORT, Fabric, new_run_id, runtime_dir
from .overlay import (
    ContainerHandle,
    container_start_script,
    guest_network_script,
    host_overlay_address,
    host_overlay_address6,
    host_overlay_mac,
    remote_macs,
    vteps,
)
from .topology import Topology


@dataclass
class Timings:
    boot: dict[str, float] = field(default_factory=dict)  # per VM: launch to first guest command
    overlay: dict[str, float] = field(default_factory=dict)  # per VM: network and containers set up
    ready: float = 0.0  # the whole topology, from the start of up()


class Deployment:
    """A running topology, with handles for its VMs and containers."""

    def __init__(self, topology: Topology, kernel: Kernel, image: GuestImage, accel: AccelChoice,
                 run_id: str | None = None, boot_timeout: float = 120.0, shell_ports: bool = False,
                 backend: Backend | None = None):
        self.topology = topology.validate()
        self.kernel = kernel
        self.image = image
        self.accel = accel
        self.run_id = run_id or new_run_id()
        self.boot_timeout = boot_timeout
        self.shell_ports = shell_ports  # a console port per VM for interactive shells (`up`)
        self.backend = backend or Backend()
        self.fabric = Fabric(self.run_id, mtu=topology.fabric.mtu)
        self.machines: dict[str, MachineCommon] = {}
        self.containers: dict[str, ContainerHandle] = {}
        self.timings = Timings()
        # what traffic has set up on it (tuning, reflectors): done once per deployment, not per run
        self.prepared: set[tuple] = set()

    def __enter__(self) -> Deployment:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # --- bring up ---------------------------------------------------------------------

    def up(self) -> None:
        start = time.monotonic()
        t = self.topology
        self.fabric.create()
        self.fabric.add_traffic_port(t.traffic_port_address, t.underlay_prefix)
        for overlay in t.overlays:
            peers = [addr for name, addr in vteps(t, overlay.name).items() if name != "host"]
            prefix = int(overlay.subnet.split("/")[1])
            self.fabric.add_vtep(overlay.vni, t.traffic_port_address, host_overlay_address(t, overlay.name), prefix,
                                 overlay.mtu, host_overlay_mac(t, overlay.name), peers,
                                 remote_macs(t, overlay.name, "host"), host_overlay_address6(t, overlay.name))
        for index, vm in enumerate(t.vms):
            nics = tuple(NicSpec(tap=self.backend.add_tap(self.fabric, nic.queues),
                                 mac=f"52:54:00:00:{index:02x}:{n:02x}", queues=nic.queues, speed_mbps=nic.speed,
                                 vhost=self.accel.vhost)
                         for n, nic in enumerate(vm.nics))
            spec = MachineSpec(name=vm.name, kernel=self.kernel.bzimage, image=self.image.root, vcpus=vm.vcpus,
                               memory_mib=vm.memory, accel=self.accel.accel, nics=nics, append=vm.append,
                               netns=self.backend.netns(self.fabric), shell_port=self.shell_ports)
            self.machines[vm.name] = self.backend.machine(spec, runtime_dir(self.run_id) / vm.name,
                                                          self.boot_timeout, self.fabric, self.run_id)
        self._parallel(self._boot, t.vms)
        self._parallel(self._lay_out, t.vms)
        self.timings.ready = time.monotonic() - start

    def _boot(self, vm) -> None:
        machine = self.machines[vm.name]
        machine.__enter__()
        self.timings.boot[vm.name] = machine.boot_seconds or 0.0

    def _lay_out(self, vm) -> None:
        machine = self.machines[vm.name]
        start = time.monotonic()
        machine.run(guest_network_script(self.topology, vm), timeout=60, check=True)
        for c in vm.containers:
            machine.run(container_start_script(c), timeout=60, check=True)
            self.containers[c.name] = ContainerHandle(c, machine)
        self.timings.overlay[vm.name] = time.monotonic() - start

    @staticmethod
    def _parallel(fn, items) -> None:
        """Run fn on every item at once; raise the first error after all ended."""
        with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]

    # --- use --------------------------------------------------------------------------

    def vm(self, name: str) -> MachineCommon:
        if name not in self.machines:
            raise KeyError(f"topology {self.topology.name}: no VM {name!r} (has {', '.join(self.machines)})")
        return self.machines[name]

    def container(self, name: str) -> ContainerHandle:
        if name not in self.containers:
            raise KeyError(f"topology {self.topology.name}: no container {name!r} (has {', '.join(self.containers)})")
        return self.containers[name]

    def nic_mac(self, vm: str) -> str:
        """The MAC address of a VM's first NIC (its eth0)."""
        return self.vm(vm).spec.nics[0].mac

    def host_run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a host-side tool inside the run's fabric namespace."""
        return cmd.run(argv, netns=self.fabric.netns, timeout=timeout, check=check)

    def host_overlay_address(self, overlay: str | None = None) -> str:
        name = overlay or self.topology.overlays[0].name
        return host_overlay_address(self.topology, name)

    # --- tear down --------------------------------------------------------------------

    def down(self, keep: bool = False) -> None:
        """Stop everything (idempotent). With keep, leave it running for debugging."""
        if keep:
            return
        machines = list(self.machines.values())
        if machines:
            with ThreadPoolExecutor(max_workers=len(machines)) as pool:
                list(pool.map(lambda m: m.shutdown(), machines))
        try:
            self.fabric.destroy()
        except FabricError:
            pass
        shutil.rmtree(runtime_dir(self.run_id), ignore_errors=True)

    def describe(self, agent_free: bool = True) -> str:
        """How to reach each VM and container (for `up` and --keep)."""
        lines = [f"run {self.run_id} ({self.backend.describe()}): fabric netns {self.fabric.netns}, traffic port {TRAFFIC_PORT} "
                 f"({self.topology.traffic_port_address})"]
        for name, machine in self.machines.items():
            lines.append(f"  vm {name}: underlay {self.topology.underlay_of(self.topology.vm(name))}; "
                         f"{machine.how_to_reach(agent_free)}")
        for name, handle in self.containers.items():
            lines.append(f"  container {name} on {handle.machine.name}: {handle.address}")
        return "\n".join(lines)

