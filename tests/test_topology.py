"""testbed.net.topology: the shipped topologies, derived addressing, and every validation rule.

Error cases start from one valid minimal topology (BASE), change one thing,
write it to a file under tmp_path and load it by path, so the file name must
appear in the message. Every message must also name the offending key or
object and fit on one line (the CLI prints it without a traceback).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from testbed.core.errors import ConfigError
from testbed.net import topology
from testbed.net.topology import Container, Fabric, Nic, Overlay, Topology, Vm

# --- the valid minimal topology the error cases vary -------------------------------------

HEAD = 'name = "mini"\n'
FABRIC = """
[fabric]
underlay = "192.168.77.0/24"
mtu = 1500
"""
OVERLAY = """
[[overlay]]
name = "ov0"
vni = 42
subnet = "10.42.0.0/24"
mtu = 1450
"""
VM_ALPHA = """
[[vm]]
name = "alpha"
vcpus = 2
memory = 512
nics = [{ queues = 2, speed = 100000 }]

  [[vm.container]]
  name = "c1"
  overlay = "ov0"
  address = "10.42.0.11"
"""
BETA_CONTAINER = """
  [[vm.container]]
  name = "c2"
  overlay = "ov0"
  address = "10.42.0.12"
"""
VM_BETA = """
[[vm]]
name = "beta"
""" + BETA_CONTAINER
BASE = HEAD + FABRIC + OVERLAY + VM_ALPHA + VM_BETA


def second_overlay(name: str, vni: int, subnet: str) -> str:
    return f'\n[[overlay]]\nname = "{name}"\nvni = {vni}\nsubnet = "{subnet}"\n'


def variant(*changes: tuple[str, str]) -> str:
    """BASE with each (old, new) applied; old must occur exactly once, so a typo cannot pass silently."""
    text = BASE
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        topology.load(path)
    return path, str(info.value)


def assert_one_line(msg: str, *fragments: str) -> None:
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


# --- the shipped topologies ---------------------------------------------------------------


def test_two_vm_loads():
    topo = topology.load("two-vm")
    assert topo.name == "two-vm"
    assert topo.origin == str(topology.TOPOLOGY_DIR / "two-vm.toml")
    assert [vm.name for vm in topo.vms] == ["client", "server"]
    assert [(vm.name, c.name) for vm, c in topo.containers()] == [
        ("client", "c1"), ("client", "c2"), ("server", "s1"), ("server", "s2")]
    assert [topo.underlay_of(vm) for vm in topo.vms] == ["192.168.77.11", "192.168.77.12"]
    assert topo.traffic_port_address == "192.168.77.2"
    assert topo.underlay_prefix == 24
    assert topo.fabric == Fabric(underlay="192.168.77.0/24", mtu=1500)
    assert topo.overlay("ov0") == Overlay(name="ov0", vni=42, subnet="10.42.0.0/24", mtu=1450)
    assert {c.name: c.mac for _, c in topo.containers()} == {
        "c1": "02:42:0a:2a:00:0b", "c2": "02:42:0a:2a:00:0c", "s1": "02:42:0a:2a:00:15", "s2": "02:42:0a:2a:00:16"}
    server = topo.vm("server")
    assert (server.vcpus, server.memory, server.nics) == (2, 512, (Nic(queues=2, speed=100_000),))
    assert all(c.command == ("sleep", "infinity") for _, c in topo.containers())


def test_three_vm_loads():
    topo = topology.load("three-vm")
    assert topo.name == "three-vm"
    assert [vm.name for vm in topo.vms] == ["client1", "client2", "server"]
    assert [c.name for _, c in topo.containers()] == ["a1", "b1", "s1", "s2"]
    assert [topo.underlay_of(vm) for vm in topo.vms] == ["192.168.78.11", "192.168.78.12", "192.168.78.13"]
    assert topo.traffic_port_address == "192.168.78.2"
    assert topo.overlay("ov0").vni == 43
    assert {c.name: c.mac for _, c in topo.containers()} == {
        "a1": "02:42:0a:2b:00:0b", "b1": "02:42:0a:2b:00:0c", "s1": "02:42:0a:2b:00:15", "s2": "02:42:0a:2b:00:16"}
    client1 = topo.vm("client1")
    assert (client1.vcpus, client1.memory, client1.nics) == (1, 384, (Nic(queues=1, speed=100_000),))


def test_vm_lookup_names_the_topology_and_its_vms():
    topo = topology.load("two-vm")
    with pytest.raises(KeyError, match="two-vm.*'nope'.*client, server"):
        topo.vm("nope")


def test_container_mac_is_docker_style():
    assert Container("c", "ov0", "10.1.2.3").mac == "02:42:0a:01:02:03"
    assert Container("c", "ov0", "172.17.255.254").mac == "02:42:ac:11:ff:fe"


# --- loading by path, and a missing name ---------------------------------------------------


def test_load_by_path(tmp_path):
    path = write(tmp_path, BASE)
    for arg in (path, str(path)):
        topo = topology.load(arg)
        assert topo.origin == str(path)
        assert topo.name == "mini"
        assert [vm.name for vm in topo.vms] == ["alpha", "beta"]
        assert [topo.underlay_of(vm) for vm in topo.vms] == ["192.168.77.11", "192.168.77.12"]


def test_load_shipped_file_by_path_equals_load_by_name():
    assert topology.load(topology.TOPOLOGY_DIR / "two-vm.toml") == topology.load("two-vm")


def test_given_underlay_address_overrides_derivation(tmp_path):
    topo = topology.load(write(tmp_path, variant(('name = "alpha"', 'name = "alpha"\nunderlay-address = "192.168.77.200"'))))
    assert [topo.underlay_of(vm) for vm in topo.vms] == ["192.168.77.200", "192.168.77.12"]


def test_kernel_args_per_vm_as_a_string_or_a_list(tmp_path):
    topo = topology.load(write(tmp_path, variant(in_alpha('append = "panic=5 sysrq_always_enabled"'))))
    assert topo.vms[0].append == ("panic=5", "sysrq_always_enabled") and topo.vms[1].append == ()
    topo = topology.load(write(tmp_path, variant(in_alpha('append = ["panic=5"]'))))
    assert topo.with_kernel_args(("quiet",)).vms[0].append == ("panic=5", "quiet")
    assert topo.with_kernel_args(("quiet",)).vms[1].append == ("quiet",)


def test_defaults_apply_when_keys_are_left_out(tmp_path):
    text = 'name = "bare"\n[[vm]]\nname = "solo"\n'
    topo = topology.load(write(tmp_path, text))
    assert topo == Topology(name="bare", vms=(Vm(name="solo"),), origin=str(tmp_path / "case.toml"))
    assert topo.fabric == Fabric()
    assert topo.vms[0].nics == (Nic(queues=2, speed=100_000),)


def test_load_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError) as info:
        topology.load("nope")
    msg = str(info.value)
    shipped = sorted(p.stem for p in topology.TOPOLOGY_DIR.glob("*.toml"))
    assert {"two-vm", "three-vm"} <= set(shipped)
    assert_one_line(msg, "nope", str(topology.TOPOLOGY_DIR / "nope.toml"), "does not exist", ", ".join(shipped))


def test_load_missing_path(tmp_path):
    with pytest.raises(ConfigError, match="absent.toml does not exist"):
        topology.load(tmp_path / "absent.toml")


@pytest.mark.parametrize("old, new", [
    ("vni = 42", "vni = "),
    ("vni = 42", "vni = 42\nvni = 43"),
    ("[[vm]]\nname = \"beta\"", "[[vm]\nname = \"beta\""),
    ('name = "mini"', 'name = "mini'),
], ids=["missing-value", "duplicate-key", "bad-table-header", "unterminated-string"])
def test_malformed_toml(tmp_path, old, new):
    path, msg = load_error(tmp_path, variant((old, new)))
    assert_one_line(msg, str(path), "not valid TOML")


# --- every rule of the parser and of validate(), one case each -------------------------

C1_ADDRESS = 'address = "10.42.0.11"'


def in_alpha(line: str) -> tuple[str, str]:
    return ('name = "alpha"', f'name = "alpha"\n{line}')


def in_c1(line: str) -> tuple[str, str]:
    return (C1_ADDRESS, f"{C1_ADDRESS}\n  {line}")


CASES = [
    # unknown keys
    ("unknown-top", [(HEAD, HEAD + "colour = 1\n")], ["unknown key 'colour'"]),
    ("unknown-fabric", [("mtu = 1500", "mtu = 1500\nspeed = 1")], ["[fabric]", "unknown key 'speed'"]),
    ("unknown-overlay", [("vni = 42", "vni = 42\nid = 1")], ["[[overlay]] #1", "unknown key 'id'"]),
    ("unknown-vm", [in_alpha("cpus = 2")], ["vm alpha", "unknown key 'cpus'"]),
    ("unknown-nic", [("speed = 100000 }", "speed = 100000, mtu = 9000 }")], ["vm alpha", "nics[0]", "unknown key 'mtu'"]),
    ("unknown-container", [in_c1('image = "alpine"')], ["vm alpha", "[[vm.container]] #1", "unknown key 'image'"]),
    # wrong types
    ("type-name", [(HEAD, "name = 5\n")], ["'name' must be str, not int"]),
    ("type-fabric-table", [(FABRIC, ""), (HEAD, HEAD + "fabric = 5\n")], ["[fabric]", "must be a table"]),
    ("type-fabric-underlay", [('underlay = "192.168.77.0/24"', "underlay = 77")], ["[fabric]", "'underlay' must be str"]),
    ("type-fabric-mtu", [("mtu = 1500", 'mtu = "1500"')], ["[fabric]", "'mtu' must be int, not str"]),
    ("type-overlay-array", [(OVERLAY, ""), (HEAD, HEAD + "overlay = 5\n")], ["'overlay' must be list, not int"]),
    ("type-overlay-entry", [(OVERLAY, ""), (HEAD, HEAD + "overlay = [5]\n")], ["[[overlay]] #1", "must be a table"]),
    ("type-overlay-name", [('name = "ov0"', "name = 0")], ["[[overlay]] #1", "'name' must be str, not int"]),
    ("type-vni-str", [("vni = 42", 'vni = "42"')], ["[[overlay]] #1", "'vni' must be int, not str"]),
    ("type-vni-bool", [("vni = 42", "vni = true")], ["[[overlay]] #1", "'vni' must be int, not bool"]),
    ("type-overlay-mtu", [("mtu = 1450", "mtu = 1450.0")], ["[[overlay]] #1", "'mtu' must be int, not float"]),
    ("type-subnet", [('subnet = "10.42.0.0/24"', "subnet = 10")], ["[[overlay]] #1", "'subnet' must be str, not int"]),
    ("type-vm-array", [(VM_ALPHA + VM_BETA, ""), (HEAD, HEAD + "vm = 5\n")], ["'vm' must be list, not int"]),
    ("type-vm-table", [(VM_ALPHA + VM_BETA, '\n[vm]\nname = "alpha"\n')], ["'vm' must be list, not dict"]),
    ("type-vm-name", [('name = "alpha"', "name = 1")], ["[[vm]] #1", "'name' must be str, not int"]),
    ("type-vcpus-str", [("vcpus = 2", 'vcpus = "2"')], ["vm alpha", "'vcpus' must be int, not str"]),
    ("type-vcpus-bool", [("vcpus = 2", "vcpus = true")], ["vm alpha", "'vcpus' must be int, not bool"]),
    ("type-memory", [("memory = 512", "memory = 512.0")], ["vm alpha", "'memory' must be int, not float"]),
    ("type-nics", [("nics = [{ queues = 2, speed = 100000 }]", "nics = { queues = 2 }")], ["vm alpha", "'nics' must be list"]),
    ("type-nic-entry", [("nics = [{ queues = 2, speed = 100000 }]", "nics = [2]")], ["vm alpha", "nics[0]", "must be a table"]),
    ("type-queues", [("queues = 2", "queues = true")], ["vm alpha", "nics[0]", "'queues' must be int, not bool"]),
    ("type-speed", [("speed = 100000", 'speed = "fast"')], ["vm alpha", "nics[0]", "'speed' must be int, not str"]),
    ("type-underlay-address", [in_alpha("underlay-address = 3232255244")],
     ["vm alpha", "'underlay-address' must be str, not int"]),
    ("type-append", [in_alpha("append = 5")], ["vm alpha", "'append'", "must be a string or a list of strings"]),
    ("type-container-array", [(BETA_CONTAINER, "container = 5\n")], ["vm beta", "'container' must be list, not int"]),
    ("type-container-name", [('name = "c1"', "name = 1")], ["vm alpha", "[[vm.container]] #1", "'name' must be str"]),
    ("type-container-overlay", [('name = "c1"\n  overlay = "ov0"', 'name = "c1"\n  overlay = 0')],
     ["vm alpha", "[[vm.container]] #1", "'overlay' must be str"]),
    ("type-container-address", [(C1_ADDRESS, "address = 10")], ["vm alpha", "[[vm.container]] #1", "'address' must be str"]),
    ("type-command", [in_c1('command = "sleep 1"')], ["vm alpha", "[[vm.container]] #1", "'command' must be list, not str"]),
    ("type-command-part", [in_c1('command = ["sleep", 1]')],
     ["vm alpha", "[[vm.container]] #1", "'command' must be a list of strings"]),
    # missing required keys
    ("missing-name", [(HEAD, "")], ["missing key 'name'"]),
    ("missing-overlay-name", [('name = "ov0"\n', "")], ["[[overlay]] #1", "missing key 'name'"]),
    ("missing-vni", [("vni = 42\n", "")], ["[[overlay]] #1", "missing key 'vni'"]),
    ("missing-subnet", [('subnet = "10.42.0.0/24"\n', "")], ["[[overlay]] #1", "missing key 'subnet'"]),
    ("missing-vm-name", [('name = "beta"\n', "")], ["[[vm]] #2", "missing key 'name'"]),
    ("missing-container-name", [('name = "c1"\n', "")], ["vm alpha", "[[vm.container]] #1", "missing key 'name'"]),
    ("missing-container-overlay", [('name = "c1"\n  overlay = "ov0"\n', 'name = "c1"\n')],
     ["vm alpha", "[[vm.container]] #1", "missing key 'overlay'"]),
    ("missing-container-address", [(C1_ADDRESS + "\n", "")], ["vm alpha", "[[vm.container]] #1", "missing key 'address'"]),
    # fabric
    ("fabric-underlay-bad", [('underlay = "192.168.77.0/24"', 'underlay = "192.168.77.1/24"')],
     ["fabric.underlay '192.168.77.1/24'", "host bits"]),
    ("fabric-mtu-low", [("mtu = 1500", "mtu = 575")], ["fabric.mtu 575", "between 576 and 9000"]),
    ("fabric-mtu-high", [("mtu = 1500", "mtu = 9001")], ["fabric.mtu 9001", "between 576 and 9000"]),
    ("no-vms", [(VM_ALPHA + VM_BETA, "")], ["no [[vm]]"]),
    # overlays
    ("overlay-duplicate-name", [(OVERLAY, OVERLAY + second_overlay("ov0", 43, "10.43.0.0/24"))],
     ["overlay ov0", "duplicate overlay name"]),
    ("overlay-duplicate-vni", [(OVERLAY, OVERLAY + second_overlay("ov1", 42, "10.43.0.0/24"))],
     ["overlay ov1", "vni 42 is used by another overlay"]),
    ("vni-zero", [("vni = 42", "vni = 0")], ["overlay ov0", "vni 0", "between 1 and 16777215"]),
    ("vni-too-big", [("vni = 42", "vni = 16777216")], ["overlay ov0", "vni 16777216", "between 1 and 16777215"]),
    ("subnet-host-bits", [('subnet = "10.42.0.0/24"', 'subnet = "10.42.0.1/24"')],
     ["overlay ov0", "subnet '10.42.0.1/24'", "host bits"]),
    ("subnet-not-a-network", [('subnet = "10.42.0.0/24"', 'subnet = "ten"')], ["overlay ov0", "subnet 'ten'"]),
    ("subnet-overlaps-underlay", [('subnet = "10.42.0.0/24"', 'subnet = "192.168.0.0/16"')],
     ["overlay ov0", "subnet 192.168.0.0/16 overlaps the underlay 192.168.77.0/24"]),
    ("overlays-overlap", [(OVERLAY, OVERLAY + second_overlay("ov1", 43, "10.42.0.128/25"))],
     ["overlay ov1", "subnet 10.42.0.128/25 overlaps overlay ov0"]),
    ("overlay-mtu-too-large", [("mtu = 1450", "mtu = 1451")], ["overlay ov0", "mtu 1451", "VXLAN adds 50 bytes", "at most 1450"]),
    ("overlay-mtu-too-large-jumbo", [("mtu = 1500", "mtu = 9000"), ("mtu = 1450", "mtu = 8951")],
     ["overlay ov0", "mtu 8951", "at most 8950"]),
    ("overlay-mtu-too-small", [("mtu = 1450", "mtu = 67")], ["overlay ov0", "mtu 67", "minimum of 68"]),
    # VMs
    ("duplicate-vm", [('name = "beta"', 'name = "alpha"')], ["vm alpha", "duplicate name"]),
    ("vcpus-zero", [("vcpus = 2", "vcpus = 0")], ["vm alpha", "vcpus 0", "between 1 and 16"]),
    ("vcpus-too-many", [("vcpus = 2", "vcpus = 17")], ["vm alpha", "vcpus 17", "between 1 and 16"]),
    ("memory-low", [("memory = 512", "memory = 255")], ["vm alpha", "memory 255 MiB is below 256 MiB"]),
    ("queues-zero", [("queues = 2", "queues = 0")], ["vm alpha", "nics[0].queues 0", "between 1 and vcpus (2)"]),
    ("queues-over-vcpus", [("queues = 2", "queues = 3")], ["vm alpha", "nics[0].queues 3", "between 1 and vcpus (2)"]),
    ("two-nics", [("nics = [{ queues = 2, speed = 100000 }]", "nics = [{}, {}]")],
     ["vm alpha", "nics", "exactly one NIC", "got 2"]),
    ("no-nics", [("nics = [{ queues = 2, speed = 100000 }]", "nics = []")], ["vm alpha", "nics", "exactly one NIC", "got 0"]),
    ("speed-zero", [("speed = 100000", "speed = 0")], ["vm alpha", "nics[0].speed 0", "positive"]),
    ("speed-negative", [("speed = 100000", "speed = -1")], ["vm alpha", "nics[0].speed -1", "positive"]),
    ("underlay-outside", [in_alpha('underlay-address = "192.168.78.5"')],
     ["vm alpha", "underlay-address 192.168.78.5 is outside its subnet 192.168.77.0/24"]),
    ("underlay-network", [in_alpha('underlay-address = "192.168.77.0"')],
     ["vm alpha", "underlay-address 192.168.77.0", "network or broadcast"]),
    ("underlay-broadcast", [in_alpha('underlay-address = "192.168.77.255"')],
     ["vm alpha", "underlay-address 192.168.77.255", "network or broadcast"]),
    ("underlay-not-ip", [in_alpha('underlay-address = "192.168.77.300"')],
     ["vm alpha", "underlay-address '192.168.77.300' is not an IPv4 address"]),
    ("underlay-empty", [in_alpha('underlay-address = ""')], ["vm alpha", "underlay-address '' is not an IPv4 address"]),
    ("underlay-traffic-port", [in_alpha('underlay-address = "192.168.77.2"')],
     ["vm alpha", "192.168.77.2 is already the host traffic port"]),
    ("underlay-duplicate", [in_alpha('underlay-address = "192.168.77.12"')],
     ["vm beta", "underlay address 192.168.77.12 is already vm alpha's"]),
    # containers
    ("container-named-like-earlier-vm", [('name = "c2"', 'name = "alpha"')],
     ["vm beta container alpha", "duplicate name", "VM and container names share one namespace"]),
    ("container-named-like-later-vm", [('name = "c1"', 'name = "beta"')], ["vm beta", "duplicate name"]),
    ("container-duplicate-name", [('name = "c2"', 'name = "c1"')], ["vm beta container c1", "duplicate name"]),
    ("container-undefined-overlay", [('name = "c1"\n  overlay = "ov0"', 'name = "c1"\n  overlay = "ov9"')],
     ["vm alpha container c1", "overlay 'ov9' is not defined", "defined: ov0"]),
    ("container-no-overlays", [(OVERLAY, "")], ["vm alpha container c1", "overlay 'ov0' is not defined", "defined: none"]),
    ("container-address-outside", [(C1_ADDRESS, 'address = "10.43.0.11"')],
     ["vm alpha container c1", "address 10.43.0.11 is outside its subnet 10.42.0.0/24"]),
    ("container-address-network", [(C1_ADDRESS, 'address = "10.42.0.0"')],
     ["vm alpha container c1", "address 10.42.0.0", "network or broadcast"]),
    ("container-address-broadcast", [(C1_ADDRESS, 'address = "10.42.0.255"')],
     ["vm alpha container c1", "address 10.42.0.255", "network or broadcast"]),
    ("container-address-not-ip", [(C1_ADDRESS, 'address = "c1.local"')],
     ["vm alpha container c1", "address 'c1.local' is not an IPv4 address"]),
    ("container-address-duplicate", [('address = "10.42.0.12"', 'address = "10.42.0.11"')],
     ["vm beta container c2", "address 10.42.0.11 is already container c1's"]),
    ("container-empty-command", [in_c1("command = []")], ["vm alpha container c1", "command is empty"]),
    # names
    ("name-upper-topology", [(HEAD, 'name = "Mini"\n')], ["name 'Mini'", "lower-case"]),
    ("name-upper-vm", [('name = "alpha"', 'name = "Alpha"')], ["vm Alpha", "name 'Alpha'", "lower-case"]),
    ("name-too-long-vm", [('name = "alpha"', 'name = "alpha-0123456789"')],
     ["vm alpha-0123456789", "name 'alpha-0123456789'", "1-15"]),
    ("name-digit-vm", [('name = "alpha"', 'name = "1alpha"')], ["vm 1alpha", "name '1alpha'", "starting with a letter"]),
    ("name-empty-vm", [('name = "alpha"', 'name = ""')], ["name ''", "1-15"]),
    ("name-upper-container", [('name = "c1"', 'name = "C1"')], ["vm alpha container C1", "name 'C1'"]),
    ("name-too-long-container", [('name = "c1"', 'name = "container-number1"')],
     ["vm alpha container container-number1", "name 'container-number1'"]),
    ("name-digit-container", [('name = "c1"', 'name = "1c"')], ["vm alpha container 1c", "name '1c'"]),
    ("name-upper-overlay", [('name = "ov0"', 'name = "OV0"')], ["overlay OV0", "name 'OV0'"]),
    ("name-underscore-overlay", [('name = "ov0"', 'name = "ov_0"')], ["overlay ov_0", "name 'ov_0'"]),
    ("name-too-long-overlay", [('name = "ov0"', 'name = "overlay-number-01"')],
     ["overlay overlay-number-01", "name 'overlay-number-01'"]),
    ("name-digit-overlay", [('name = "ov0"', 'name = "0ov"')], ["overlay 0ov", "name '0ov'"]),
]


def test_base_is_valid(tmp_path):
    topo = topology.load(write(tmp_path, BASE))
    assert [c.name for _, c in topo.containers()] == ["c1", "c2"]


def test_case_ids_are_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("changes, fragments", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rule(tmp_path, changes, fragments):
    path, msg = load_error(tmp_path, variant(*changes))
    assert msg.startswith(str(path) + ":"), msg
    assert_one_line(msg, *fragments)


def test_longest_name_is_accepted(tmp_path):
    name = "a" + "b" * 14
    topo = topology.load(write(tmp_path, variant(('name = "alpha"', f'name = "{name}"'))))
    assert topo.vms[0].name == name


def test_mtu_at_the_limits_is_accepted(tmp_path):
    topology.load(write(tmp_path, variant(("mtu = 1500", "mtu = 576"), ("mtu = 1450", "mtu = 526"))))
    topology.load(write(tmp_path, variant(("mtu = 1500", "mtu = 9000"), ("mtu = 1450", "mtu = 8950"))))
    topology.load(write(tmp_path, variant(("mtu = 1450", "mtu = 68"))))


def test_vni_limits_are_accepted(tmp_path):
    topology.load(write(tmp_path, variant(("vni = 42", "vni = 1"))))
    topology.load(write(tmp_path, variant(("vni = 42", "vni = 16777215"))))


# --- topologies built in Python ------------------------------------------------------------


def python_topology(**changes) -> Topology:
    """The Python twin of BASE; keyword arguments replace Topology fields."""
    fields = dict(
        name="mini",
        vms=(Vm(name="alpha", vcpus=2, memory=512, nics=(Nic(queues=2, speed=100_000),),
                containers=(Container(name="c1", overlay="ov0", address="10.42.0.11"),)),
             Vm(name="beta", containers=(Container(name="c2", overlay="ov0", address="10.42.0.12"),))),
        overlays=(Overlay(name="ov0", vni=42, subnet="10.42.0.0/24", mtu=1450),),
        fabric=Fabric(underlay="192.168.77.0/24", mtu=1500),
    )
    fields.update(changes)
    return Topology(**fields)


def test_python_topology_validates_and_matches_toml(tmp_path):
    topo = python_topology()
    assert topo.origin == "<python>"
    assert topo.validate() is topo
    assert [topo.underlay_of(vm) for vm in topo.vms] == ["192.168.77.11", "192.168.77.12"]
    assert topo.traffic_port_address == "192.168.77.2"
    assert dataclasses.replace(topology.load(write(tmp_path, BASE)), origin="<python>") == topo


def test_from_dict_uses_the_given_origin():
    data = {"name": "d", "vm": [{"name": "a", "container": [{"name": "c", "overlay": "ov9", "address": "10.0.0.2"}]}]}
    with pytest.raises(ConfigError) as info:
        topology.from_dict(data, "my-origin").validate()
    assert_one_line(str(info.value), "my-origin: vm a container c", "overlay 'ov9' is not defined")


def _with_vm(index: int, **changes):
    def change(topo: Topology) -> Topology:
        vms = list(topo.vms)
        vms[index] = dataclasses.replace(vms[index], **changes)
        return dataclasses.replace(topo, vms=tuple(vms))
    return change


PY_CASES = [
    ("duplicate-container-address",
     _with_vm(1, containers=(Container(name="c2", overlay="ov0", address="10.42.0.11"),)),
     ["vm beta container c2", "address 10.42.0.11 is already container c1's"]),
    ("duplicate-vm-name", _with_vm(1, name="alpha"), ["vm alpha", "duplicate name"]),
    ("undefined-overlay", lambda t: dataclasses.replace(t, overlays=()), ["vm alpha container c1", "defined: none"]),
    ("empty-command", _with_vm(0, containers=(Container(name="c1", overlay="ov0", address="10.42.0.11", command=()),)),
     ["vm alpha container c1", "command is empty"]),
    ("bad-vm-name", _with_vm(0, name="Alpha"), ["vm Alpha", "name 'Alpha'"]),
    ("bad-topology-name", lambda t: dataclasses.replace(t, name="9lives"), ["name '9lives'"]),
    ("no-nics", _with_vm(0, nics=()), ["vm alpha", "got 0"]),
    ("queues-over-vcpus", _with_vm(0, vcpus=1), ["vm alpha", "nics[0].queues 2", "vcpus (1)"]),
    ("no-vms", lambda t: dataclasses.replace(t, vms=()), ["no [[vm]]"]),
    ("vni-out-of-range", lambda t: dataclasses.replace(t, overlays=(Overlay("ov0", 0, "10.42.0.0/24"),)),
     ["overlay ov0", "vni 0"]),
    ("overlay-mtu", lambda t: dataclasses.replace(t, fabric=Fabric(mtu=1400)), ["overlay ov0", "at most 1350"]),
    ("underlay-traffic-port", _with_vm(1, underlay_address="192.168.77.2"), ["vm beta", "host traffic port"]),
]


@pytest.mark.parametrize("change, fragments", [case[1:] for case in PY_CASES], ids=[case[0] for case in PY_CASES])
def test_python_rule(change, fragments):
    with pytest.raises(ConfigError) as info:
        change(python_topology()).validate()
    msg = str(info.value)
    assert msg.startswith("<python>:"), msg
    assert_one_line(msg, *fragments)
