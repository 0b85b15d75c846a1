"""The overlay inside the guests: VXLAN, a bridge, and containers on veths.

The layout is that of Docker's overlay driver and of Flannel's VXLAN
backend: per VM and overlay a VXLAN device (learning off, static FDB
entries for every known peer) enslaved to a bridge, and per container a
veth pair with one end on that bridge and the other in the container's
network namespace. Containers are OCI containers run by crun, each in its
own network, PID, mount, IPC and UTS namespaces, with the guest's
read-only root as their root filesystem.

Everything here builds text (shell scripts, OCI JSON) from the topology;
running it is the deployment's job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from ..core.cmd import CommandResult
from ..vm.machine_common import MachineCommon
from .topology import VXLAN_PORT, Container, Topology, Vm, bridge_name, docker_mac, vxlan_name

BUNDLES = "/run/prism/containers"
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_NICE",
    "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE", "CAP_IPC_LOCK", "CAP_AUDIT_WRITE", "CAP_MKNOD",
]


def veth_name(container: Container) -> str:
    return f"v-{container.name}"[:15]


def vteps(topology: Topology, overlay_name: str) -> dict[str, str]:
    """Underlay address of every endpoint of an overlay: VMs with containers on it, and the host."""
    endpoints = {"host": topology.traffic_port_address}
    for vm in topology.vms:
        if any(c.overlay == overlay_name for c in vm.containers):
            endpoints[vm.name] = topology.underlay_of(vm)
    return endpoints


def host_overlay_address(topology: Topology, overlay_name: str) -> str:
    """The host traffic port's address on an overlay: the subnet's first host."""
    return str(ipaddress.IPv4Network(topology.overlay(overlay_name).subnet).network_address + 1)


def host_overlay_address6(topology: Topology, overlay_name: str) -> str:
    overlay = topology.overlay(overlay_name)
    return overlay.address6(host_overlay_address(topology, overlay_name))


def host_overlay_mac(topology: Topology, overlay_name: str) -> str:
    return docker_mac(host_overlay_address(topology, overlay_name))


def remote_macs(topology: Topology, overlay_name: str, here: str) -> list[tuple[str, str]]:
    """(MAC, its VTEP) for every endpoint of the overlay not on `here`: containers, and the host."""
    macs = [(c.mac, topology.underlay_of(vm)) for vm, c in topology.containers()
            if c.overlay == overlay_name and vm.name != here]
    if here != "host":
        macs.append((host_overlay_mac(topology, overlay_name), topology.traffic_port_address))
    return macs


def guest_network_script(topology: Topology, vm: Vm) -> str:
    """Shell (busybox or dash) that lays out the underlay, overlays and container netns."""
    lines = ["set -e",
             f"ip link set eth0 mtu {topology.fabric.mtu} up",
             f"ip addr add {topology.underlay_of(vm)}/{topology.underlay_prefix} dev eth0"]
    local = topology.underlay_of(vm)
    for name in sorted({c.overlay for c in vm.containers}):
        overlay = topology.overlay(name)
        vx, br = vxlan_name(overlay.vni), bridge_name(overlay.vni)
        prefix = ipaddress.IPv4Network(overlay.subnet).prefixlen
        lines += [
            f"ip link add {vx} mtu {overlay.mtu} type vxlan id {overlay.vni} local {local} "
            f"dstport {VXLAN_PORT} nolearning dev eth0",
            f"ip link add {br} mtu {overlay.mtu} type bridge",
            f"ip link set {vx} master {br} up",
            f"ip link set {br} up",
        ]
        for peer_name, peer in vteps(topology, name).items():
            if peer_name != vm.name:
                lines.append(f"bridge fdb append 00:00:00:00:00:00 dev {vx} dst {peer}")
        for mac, peer in remote_macs(topology, name, vm.name):
            lines.append(f"bridge fdb add {mac} dev {vx} dst {peer}")
        for c in vm.containers:
            if c.overlay != name:
                continue
            veth = veth_name(c)
            lines += [
                f"ip netns add {c.name}",
                f"ip link add {veth} mtu {overlay.mtu} type veth peer name eth0 netns {c.name}",
                f"ip link set {veth} master {br} up",
                f"ip -n {c.name} link set lo up",
                f"ip -n {c.name} link set eth0 address {c.mac} mtu {overlay.mtu} up",
                f"ip -n {c.name} addr add {c.address}/{prefix} dev eth0",
                f"ip -n {c.name} addr add {overlay.address6(c.address)}/64 dev eth0 nodad",
            ]
    return "\n".join(lines) + "\n"


def oci_config(container: Container) -> dict:
    """An OCI runtime spec: the guest's root read-only, own namespaces, the prepared netns."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(container.command),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
                    f"HOSTNAME={container.name}"],
            "cwd": "/",
            "capabilities": {kind: CAPABILITIES for kind in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": container.name,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
            {"destination": "/root", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=700"]},
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": f"/run/netns/{container.name}"},
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
        },
    }


def container_start_script(container: Container) -> str:
    """Shell that makes the bundle (rootfs = a bind of the read-only root) and runs it."""
    bundle = f"{BUNDLES}/{container.name}"
    config = json.dumps(oci_config(container))
    return "\n".join([
        "set -e",
        f"mkdir -p {bundle}/rootfs",
        f"mount --bind -o ro / {bundle}/rootfs",
        f"cat > {bundle}/config.json <<'PRISM_EOF'\n{config}\nPRISM_EOF",
        # the container's stdio must not be the agent's pipes, or guest-exec never ends
        f"crun --cgroup-manager=cgroupfs run --detach --bundle {bundle} {container.name} "
        f"</dev/null >{bundle}/output.log 2>&1",
    ]) + "\n"


@dataclass
class ContainerHandle:
    """A running container: run commands in it, find its PID."""

    container: Container
    machine: MachineCommon  # either backend's machine
    _pid: int | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def address(self) -> str:
        return self.container.address

    def exec(self, command: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run command (a shell line) inside the container's namespaces."""
        argv = ["crun", "exec", self.name, "/bin/sh", "-c", command]
        result = self.machine.run(argv, timeout=timeout)
        result = dataclasses.replace(result, command=command)
        return result.check() if check else result

    def spawn(self, command: str, log: str | None = None) -> None:
        """Start command (a shell line) in the container and leave it running.

        Its output goes to log (default /tmp/<first word>.log) inside the
        container: the agent's pipes must not stay open, or the agent's exec
        never ends.
        """
        log = log or f"/tmp/{command.split()[0].rsplit('/', 1)[-1]}.log"
        inner = f"exec {command} </dev/null >{log} 2>&1"
        self.machine.run(f"crun exec --detach {self.name} /bin/sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1",
                         check=True)

    @contextlib.contextmanager
    def running(self, command: str, stop: str, log: str | None = None) -> Iterator[None]:
        """command (a shell line) running in the container for the length of a with block; stop ends it."""
        self.spawn(command, log)
        try:
            yield
        finally:
            self.exec(stop, timeout=30)

    def pid(self) -> int:
        """The PID (in the guest) of the container's first process.

        Asked of crun once: a container runs for its deployment's life (the
        testbed never restarts one), and every run needs the PID again.
        """
        if self._pid is None:
            state = self.machine.run(["crun", "state", self.name], check=True).stdout
            self._pid = int(json.loads(state)["pid"])
        return self._pid

    def state(self) -> str:
        out = self.machine.run(["crun", "state", self.name], check=True).stdout
        return str(json.loads(out)["status"])

