"""testbed.net.backend: what differs between the qemu and libvirt backends (nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.core.errors import ConfigError, FabricError
from testbed.net import fabric as fabric_mod
from testbed.net.backend import Backend
from testbed.net.fabric import Fabric
from testbed.vm.libvirt_machine import DEFAULT_URI, LibvirtMachine
from testbed.vm.machine import Machine
from testbed.vm.qemu_cmd import MachineSpec

SPEC = MachineSpec(name="client", kernel=Path("/k/bzImage"), image=Path("/img/root.ext4"))


def test_unknown_backend_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^--backend xen: must be one of qemu, libvirt$"):
        Backend("xen")


def test_qemu_backend_starts_qemu_in_the_run_namespace():
    backend = Backend()
    assert backend.netns(Fabric("1234abcd")) == "prism-1234abcd"
    assert type(backend.machine(SPEC, Path("/run/x/client"), 60, Fabric("1234abcd"), "1234abcd")) is Machine


def test_libvirt_backend_leaves_the_namespace_to_the_taps_and_names_domains_by_run():
    backend = Backend("libvirt", "qemu+ssh://root@host/system")
    fabric = Fabric("1234abcd")
    assert backend.netns(fabric) is None
    machine = backend.machine(SPEC, Path("/run/x/client"), 60, fabric, "1234abcd")
    assert isinstance(machine, LibvirtMachine)
    assert machine.domain_name == "prism-1234abcd-client"
    assert machine.uri == "qemu+ssh://root@host/system"
    assert machine.fabric is fabric
    assert Backend("libvirt").libvirt_uri == DEFAULT_URI


@pytest.mark.parametrize(("name", "run_id"), [("pt1234abcd0", "1234abcd"), ("ptdeadbeef17", "deadbeef")])
def test_host_tap_names_carry_the_run_id(name, run_id):
    match = fabric_mod._HOST_TAP.fullmatch(name)
    assert match and match.group(1) == run_id


@pytest.mark.parametrize("name", ["pt1234abcd", "ptxyz", "tap0", "pt1234abcdx0", "eth0", "vnet3"])
def test_only_testbed_host_taps_match(name):
    assert fabric_mod._HOST_TAP.fullmatch(name) is None


def test_host_tap_needs_a_created_fabric():
    with pytest.raises(FabricError, match="create it before adding taps"):
        Fabric("1234abcd").add_host_tap(2)
