"""Topologies as validated data: VMs, their NICs and containers, overlays.

A topology comes from a TOML file (cases/topologies/) or is built in Python;
either way `validate()` checks it before anything starts, and every error
names where it came from, the key, and what is wrong.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError
from ..core.paths import REPO_ROOT
from ..core.tomlconf import check_keys, read_named, typed
from ..core.tomlconf import table as as_table
from ..vm.qemu_cmd import kernel_args

TOPOLOGY_DIR = REPO_ROOT / "cases" / "topologies"
VXLAN_OVERHEAD_V4 = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
VXLAN_PORT = 4789


def vxlan_name(vni: int) -> str:
    """The VXLAN device of overlay vni, in a guest and on the host's fabric alike."""
    return f"vx{vni}"


def bridge_name(vni: int) -> str:
    """The bridge of overlay vni, in a guest and on the host's fabric alike."""
    return f"ob{vni}"
_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}")


def docker_mac(address: str) -> str:
    """Docker's scheme: 02:42 and the IPv4 address, so FDB entries can be static."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


@dataclass(frozen=True)
class Nic:
    queues: int = 2
    speed: int = 100_000  # Mbit/s, what the guest's ethtool reports


@dataclass(frozen=True)
class Container:
    name: str
    overlay: str
    address: str
    command: tuple[str, ...] = ("sleep", "infinity")

    @property
    def mac(self) -> str:
        return docker_mac(self.address)


@dataclass(frozen=True)
class Vm:
    name: str
    vcpus: int = 2
    memory: int = 512
    nics: tuple[Nic, ...] = (Nic(),)
    containers: tuple[Container, ...] = ()
    underlay_address: str | None = None
    append: tuple[str, ...] = ()  # extra kernel arguments for this VM


@dataclass(frozen=True)
class Overlay:
    name: str
    vni: int
    subnet: str
    mtu: int = 1450

    @property
    def subnet6(self) -> str:
        """The overlay's IPv6 prefix, derived from its VNI (a ULA /64), so every overlay is dual-stack."""
        return f"fd00:0:0:{self.vni:x}::/64"

    def address6(self, address: str) -> str:
        """The IPv6 twin of an IPv4 overlay address: the same host number in subnet6."""
        host = int(ipaddress.IPv4Address(address)) - int(ipaddress.IPv4Network(self.subnet).network_address)
        return str(ipaddress.IPv6Network(self.subnet6).network_address + host)


@dataclass(frozen=True)
class Fabric:
    underlay: str = "192.168.77.0/24"
    mtu: int = 1500


@dataclass(frozen=True)
class Topology:
    name: str
    vms: tuple[Vm, ...]
    overlays: tuple[Overlay, ...] = ()
    fabric: Fabric = field(default_factory=Fabric)
    origin: str = "<python>"

    # --- derived addressing --------------------------------------------------------

    def underlay_of(self, vm: Vm) -> str:
        """The VM's eth0 address: given, or the 11th host address onwards."""
        if vm.underlay_address is not None:
            return vm.underlay_address
        net = ipaddress.IPv4Network(self.fabric.underlay)
        return str(net.network_address + 11 + self.vms.index(vm))

    @property
    def traffic_port_address(self) -> str:
        """The host traffic port's underlay address (the second host address)."""
        return str(ipaddress.IPv4Network(self.fabric.underlay).network_address + 2)

    @property
    def underlay_prefix(self) -> int:
        return ipaddress.IPv4Network(self.fabric.underlay).prefixlen

    def with_kernel_args(self, args: tuple[str, ...]) -> Topology:
        """The same topology with args appended to every VM's kernel command line."""
        if not args:
            return self
        vms = tuple(dataclasses.replace(vm, append=vm.append + tuple(args)) for vm in self.vms)
        return dataclasses.replace(self, vms=vms)

    def overlay(self, name: str) -> Overlay:
        return next(o for o in self.overlays if o.name == name)

    def containers(self) -> list[tuple[Vm, Container]]:
        return [(vm, c) for vm in self.vms for c in vm.containers]

    def vm(self, name: str) -> Vm:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(f"topology {self.name}: no VM {name!r} (has {', '.join(v.name for v in self.vms)})")

    # --- validation ------------------------------------------------------------------

    def validate(self) -> Topology:
        """Raise ConfigError naming the first problem; return self when sound."""
        _check_name(self.name, f"{self.origin}: name")
        underlay = self._check_fabric()
        if not self.vms:
            raise ConfigError(f"{self.origin}: no [[vm]]: a topology needs at least one VM")
        overlays = self._check_overlays(underlay)
        names: set[str] = set()
        addresses: dict[str, str] = {self.traffic_port_address: "the host traffic port"}
        for vm in self.vms:
            self._check_vm(vm, underlay, names, addresses)
            for c in vm.containers:
                self._check_container(vm, c, overlays, names, addresses)
        return self

    def _check_fabric(self) -> ipaddress.IPv4Network:
        try:
            underlay = ipaddress.IPv4Network(self.fabric.underlay)
        except ValueError as exc:
            raise ConfigError(f"{self.origin}: fabric.underlay {self.fabric.underlay!r}: {exc}") from None
        if not 576 <= self.fabric.mtu <= 9000:
            raise ConfigError(f"{self.origin}: fabric.mtu {self.fabric.mtu} must be between 576 and 9000")
        return underlay

    def _check_overlays(self, underlay: ipaddress.IPv4Network) -> dict[str, ipaddress.IPv4Network]:
        """Each overlay's subnet by name, once names, VNIs, subnets and MTUs are sound."""
        overlays: dict[str, ipaddress.IPv4Network] = {}
        vnis: set[int] = set()
        for o in self.overlays:
            key = f"{self.origin}: overlay {o.name}"
            _check_name(o.name, f"{key}: name")
            if o.name in overlays:
                raise ConfigError(f"{key}: duplicate overlay name")
            if not 1 <= o.vni <= 0xFFFFFF:
                raise ConfigError(f"{key}: vni {o.vni} must be between 1 and 16777215")
            if o.vni in vnis:
                raise ConfigError(f"{key}: vni {o.vni} is used by another overlay")
            vnis.add(o.vni)
            net = self._overlay_subnet(o, key, underlay, overlays)
            if o.mtu + VXLAN_OVERHEAD_V4 > self.fabric.mtu:
                raise ConfigError(f"{key}: mtu {o.mtu} is too large for the underlay: VXLAN adds "
                                  f"{VXLAN_OVERHEAD_V4} bytes, so at most {self.fabric.mtu - VXLAN_OVERHEAD_V4}")
            if o.mtu < 68:
                raise ConfigError(f"{key}: mtu {o.mtu} is below IPv4's minimum of 68")
            overlays[o.name] = net
        return overlays

    def _overlay_subnet(self, o: Overlay, key: str, underlay: ipaddress.IPv4Network,
                        others: dict[str, ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
        try:
            net = ipaddress.IPv4Network(o.subnet)
        except ValueError as exc:
            raise ConfigError(f"{key}: subnet {o.subnet!r}: {exc}") from None
        if net.overlaps(underlay):
            raise ConfigError(f"{key}: subnet {o.subnet} overlaps the underlay {self.fabric.underlay}")
        for other, other_net in others.items():
            if net.overlaps(other_net):
                raise ConfigError(f"{key}: subnet {o.subnet} overlaps overlay {other}")
        return net

    def _check_vm(self, vm: Vm, underlay: ipaddress.IPv4Network, names: set[str], addresses: dict[str, str]) -> None:
        key = f"{self.origin}: vm {vm.name}"
        _check_name(vm.name, f"{key}: name")
        if vm.name in names:
            raise ConfigError(f"{key}: duplicate name")
        names.add(vm.name)
        if not 1 <= vm.vcpus <= 16:
            raise ConfigError(f"{key}: vcpus {vm.vcpus} must be between 1 and 16")
        if vm.memory < 256:
            raise ConfigError(f"{key}: memory {vm.memory} MiB is below 256 MiB")
        if len(vm.nics) != 1:
            raise ConfigError(f"{key}: nics: exactly one NIC per VM is supported (got {len(vm.nics)})")
        for i, nic in enumerate(vm.nics):
            if not 1 <= nic.queues <= vm.vcpus:
                raise ConfigError(f"{key}: nics[{i}].queues {nic.queues} must be between 1 and vcpus "
                                  f"({vm.vcpus}): the guest uses one queue pair per vCPU at most")
            if nic.speed <= 0:
                raise ConfigError(f"{key}: nics[{i}].speed {nic.speed} must be a positive Mbit/s")
        address = self.underlay_of(vm)
        _check_host(address, underlay, f"{key}: underlay-address", self.fabric.underlay)
        if address in addresses:
            raise ConfigError(f"{key}: underlay address {address} is already {addresses[address]}")
        addresses[address] = f"vm {vm.name}'s"

    def _check_container(self, vm: Vm, c: Container, overlays: dict[str, ipaddress.IPv4Network], names: set[str],
                         addresses: dict[str, str]) -> None:
        ckey = f"{self.origin}: vm {vm.name} container {c.name}"
        _check_name(c.name, f"{ckey}: name")
        if c.name in names:
            raise ConfigError(f"{ckey}: duplicate name (VM and container names share one namespace)")
        names.add(c.name)
        if c.overlay not in overlays:
            raise ConfigError(f"{ckey}: overlay {c.overlay!r} is not defined (defined: "
                              f"{', '.join(overlays) or 'none'})")
        _check_host(c.address, overlays[c.overlay], f"{ckey}: address", self.overlay(c.overlay).subnet)
        if c.address in addresses:
            raise ConfigError(f"{ckey}: address {c.address} is already {addresses[c.address]}")
        addresses[c.address] = f"container {c.name}'s"
        if not c.command:
            raise ConfigError(f"{ckey}: command is empty")


def _check_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where} {name!r}: use 1-15 lower-case letters, digits and '-', starting with a letter")


def _check_host(address: str, net: ipaddress.IPv4Network, where: str, subnet: str) -> None:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{where} {address!r} is not an IPv4 address") from None
    if ip not in net:
        raise ConfigError(f"{where} {address} is outside its subnet {subnet}")
    if ip in (net.network_address, net.broadcast_address):
        raise ConfigError(f"{where} {address} is the network or broadcast address of {subnet}")


# --- TOML ----------------------------------------------------------------------------

_TOP = {"name", "fabric", "overlay", "vm"}
_FABRIC = {"underlay", "mtu"}
_OVERLAY = {"name", "vni", "subnet", "mtu"}
_VM = {"name", "vcpus", "memory", "nics", "container", "underlay-address", "append"}
_NIC = {"queues", "speed"}
_CONTAINER = {"name", "overlay", "address", "command"}


def from_dict(data: dict, origin: str) -> Topology:
    check_keys(data, _TOP, origin)
    fabric_t = check_keys(as_table(data.get("fabric", {}), f"{origin}: [fabric]"), _FABRIC, f"{origin}: [fabric]")
    fabric = Fabric(underlay=typed(fabric_t, "underlay", str, f"{origin}: [fabric]", Fabric.underlay),
                    mtu=typed(fabric_t, "mtu", int, f"{origin}: [fabric]", Fabric.mtu))
    overlays = []
    for i, raw in enumerate(typed(data, "overlay", list, origin, [])):
        where = f"{origin}: [[overlay]] #{i + 1}"
        t = check_keys(as_table(raw, where), _OVERLAY, where)
        overlays.append(Overlay(name=typed(t, "name", str, where), vni=typed(t, "vni", int, where),
                                subnet=typed(t, "subnet", str, where), mtu=typed(t, "mtu", int, where, 1450)))
    vms = []
    for i, raw in enumerate(typed(data, "vm", list, origin, [])):
        where = f"{origin}: [[vm]] #{i + 1}"
        t = as_table(raw, where)
        name = typed(t, "name", str, where)
        where = f"{origin}: vm {name}"
        check_keys(t, _VM, where)
        nics = []
        for j, nic_raw in enumerate(typed(t, "nics", list, where, [{}])):
            nwhere = f"{where}: nics[{j}]"
            n = check_keys(as_table(nic_raw, nwhere), _NIC, nwhere)
            nics.append(Nic(queues=typed(n, "queues", int, nwhere, 2), speed=typed(n, "speed", int, nwhere, 100_000)))
        containers = []
        for j, c_raw in enumerate(typed(t, "container", list, where, [])):
            cwhere = f"{where}: [[vm.container]] #{j + 1}"
            c = check_keys(as_table(c_raw, cwhere), _CONTAINER, cwhere)
            command = typed(c, "command", list, cwhere, ["sleep", "infinity"])
            if not all(isinstance(part, str) for part in command):
                raise ConfigError(f"{cwhere}: 'command' must be a list of strings")
            containers.append(Container(name=typed(c, "name", str, cwhere), overlay=typed(c, "overlay", str, cwhere),
                                        address=typed(c, "address", str, cwhere), command=tuple(command)))
        vms.append(Vm(name=name, vcpus=typed(t, "vcpus", int, where, 2), memory=typed(t, "memory", int, where, 512),
                      nics=tuple(nics), containers=tuple(containers),
                      underlay_address=typed(t, "underlay-address", str, where) if "underlay-address" in t else None,
                      append=kernel_args(t.get("append", ()), f"{where}: 'append'")))
    return Topology(name=typed(data, "name", str, origin), vms=tuple(vms), overlays=tuple(overlays),
                    fabric=fabric, origin=origin)


def load(name_or_path: str | Path) -> Topology:
    """A topology by file path, or by name from cases/topologies/."""
    data, path = read_named(name_or_path, TOPOLOGY_DIR, "topology")
    return from_dict(data, str(path)).validate()
