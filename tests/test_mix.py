"""Traffic mixes as data: the shipped mix, and one-line errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.core.errors import ConfigError
from testbed.net import topology as topology_mod
from testbed.traffic import mix as mix_mod

GOOD = """
name = "m"
topology = "two-vm"
[tuning.server]
rps = { ov0 = [1] }
irq = { eth0 = [0] }
sysctl = { "net.core.netdev_max_backlog" = 2000 }
reflector-cpus = [0]
[[flow]]
name = "priority"
dst = "s1"
dport = 7007
dscp = 46
[[flow]]
name = "bulk-probe"
class = "bulk"
dst = "s1"
dport = 7008
[[flow]]
name = "flood"
kind = "flood"
dst = "s2"
rate = 5000
[[flow]]
name = "tcp"
kind = "iperf3"
src = "c1"
dst = "s2"
"""


def load(tmp_path: Path, text: str) -> mix_mod.Mix:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return mix_mod.load(path).validate(topology_mod.load("two-vm"))


def test_shipped_mixes_load_and_fit_their_topologies():
    for path in sorted(mix_mod.MIX_DIR.glob("*.toml")):
        m = mix_mod.load(path)
        m.validate(topology_mod.load(m.topology))
        assert m.flows_of(mix_mod.PRIORITY)


def test_a_mix_reads_flows_classes_and_tuning(tmp_path):
    m = load(tmp_path, GOOD)
    assert [p.name for p in m.probes] == ["priority", "bulk-probe"]
    assert [p.flow_id for p in m.probes] == [1, 2]
    assert m.classes == {"priority": "priority", "bulk-probe": "bulk"}
    assert m.priority_ports == (7007,) and m.priority_dscp == (46,)
    assert m.floods[0].rate == 5000 and m.iperf3[0].protocol == "tcp"
    assert m.tuning["server"].rps == {"ov0": (1,)}
    assert m.tuning["server"].irq == {"eth0": (0,)}
    assert m.tuning["server"].sysctl == {"net.core.netdev_max_backlog": "2000"}
    assert m.loaded and not m.without_bulk().loaded
    assert m.without_bulk().probes == m.probes


@pytest.mark.parametrize(("change", "message"), [
    (('dst = "s2"\nrate = 5000', 'dst = "nowhere"\nrate = 5000'), "flow flood: no container 'nowhere' in topology two-vm"),
    (('name = "bulk-probe"', 'name = "priority"'), "flow name 'priority' is used twice"),
    (('class = "bulk"', 'class = "urgent"'), "class 'urgent' must be priority or bulk"),
    (('kind = "iperf3"', 'kind = "iperf9"'), "kind 'iperf9' must be probe, flood, iperf3 or hog"),
    (("rps = { ov0 = [1] }", "rps = { ov0 = [5] }"), "rps ov0: CPUs [5] must be non-empty and below the VM's 2 vCPUs"),
    (("rps = { ov0 = [1] }", "rps = { ov9 = [1] }"), "rps: 'ov9' is neither an overlay"),
    (("irq = { eth0 = [0] }", "irq = { ov0 = [0] }"), "irq: 'ov0' is not a guest NIC (ethN)"),
    (("irq = { eth0 = [0] }", "irq = { eth0 = [2] }"), "irq eth0: CPUs [2] must be non-empty and below"),
    (("irq = { eth0 = [0] }", "irq = { eth0 = 0 }"), "irq eth0 must be a list of CPU numbers"),
    (("[tuning.server]", "[tuning.nobody]"), "[tuning.nobody]: no vm 'nobody'"),
    (("dscp = 46", "dscp = 99"), "count must be positive and dscp 0-63"),
    (("dscp = 46", "dscp = true"), "'dscp' must be int, not bool"),
    (("dscp = 46", "colour = 1"), "unknown key 'colour'"),
])
def test_bad_mixes_fail_with_one_line(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        load(tmp_path, GOOD.replace(old, new, 1))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_mix_needs_a_priority_probe(tmp_path):
    text = GOOD.replace('name = "priority"\ndst = "s1"', 'name = "priority"\nclass = "bulk"\ndst = "s1"')
    with pytest.raises(ConfigError, match="needs at least one probe flow of class 'priority'"):
        load(tmp_path, text)


def test_an_unknown_mix_names_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"mix nope: .*nope.toml does not exist \(shipped: .*overlay-flood"):
        mix_mod.load("nope")


def test_the_priority_flood_twin_sends_the_flood_to_a_priority_port(tmp_path):
    m = load(tmp_path, GOOD).with_priority_flood()
    assert m.name == "m-priority-flood" and m.floods[0].dport == 7007 and m.floods[0].rate == 5000
    with pytest.raises(ConfigError, match="has no flood to send to a priority port"):
        m.without_bulk().with_priority_flood()
