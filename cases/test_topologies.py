"""Multi-VM topologies: containers on a VXLAN overlay, reached across VMs and
from the host's traffic port; nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from leftovers import netns_names, pids_naming

from testbed import Deployment
from testbed.core.errors import ConfigError
from testbed.net import topology as topology_mod
from testbed.net.fabric import NETNS_PREFIX, reap_stale, runtime_dir

pytestmark = pytest.mark.vm

BOTH = pytest.mark.parametrize("deployment", ["two-vm", "three-vm"], indirect=True)
TWO_VM = pytest.mark.parametrize("deployment", ["two-vm"], indirect=True)


def snmp(container, field: str) -> int:
    """One Ip: counter from the container's own /proc/net/snmp."""
    lines = [line.split() for line in container.exec("cat /proc/net/snmp", check=True).stdout.splitlines()
             if line.startswith("Ip:")]
    header, values = lines[0], lines[1]
    return int(values[header.index(field)])


@BOTH
def test_every_container_reaches_every_other_across_vms(deployment):
    containers = list(deployment.containers.values())
    for src in containers:
        for dst in containers:
            if src is dst:
                continue
            result = src.exec(f"ping -c 1 -W 5 {dst.address}", timeout=20)
            assert result.ok, f"{src.name} ({src.machine.name}) -> {dst.name} ({dst.machine.name}):\n{result.stdout}"


@BOTH
def test_host_traffic_port_reaches_containers_through_vxlan(deployment):
    for handle in deployment.containers.values():
        result = deployment.host_run(["ping", "-c", "2", "-W", "5", handle.address])
        assert result.ok, f"host -> {handle.name}:\n{result.stdout}{result.stderr}"
    # the replies came back through the host's VXLAN endpoint, not around it
    stats = deployment.host_run(["ip", "-s", "link", "show", f"vx{deployment.topology.overlays[0].vni}"]).stdout
    rx_packets = int(stats.split("RX:")[1].splitlines()[1].split()[1])
    assert rx_packets >= 2 * len(deployment.containers)


@TWO_VM
def test_containers_are_real_oci_containers_in_their_own_namespaces(deployment):
    handle = next(iter(deployment.containers.values()))
    assert handle.state() == "running"
    pid = handle.pid()
    machine = handle.machine
    for ns in ("net", "pid", "mnt", "uts", "ipc"):
        inside = machine.run(f"readlink /proc/{pid}/ns/{ns}", check=True).stdout.strip()
        outside = machine.run(f"readlink /proc/1/ns/{ns}", check=True).stdout.strip()
        assert inside != outside, f"container {handle.name} shares the guest's {ns} namespace"
    assert handle.exec("hostname", check=True).stdout.strip() == handle.name
    assert handle.exec("echo $$", check=True).stdout.strip() != str(pid)  # a new shell in its PID namespace
    assert handle.exec("ip -o -4 addr show eth0", check=True).stdout.split()[3] == f"{handle.address}/24"


@TWO_VM
def test_1400_byte_payload_crosses_intact(deployment):
    target = deployment.container("s1")
    # iputils ping on the host checks every echoed byte and says "wrong data byte" otherwise
    result = deployment.host_run(["ping", "-c", "3", "-W", "5", "-s", "1400", "-p", "a5c3", target.address])
    assert result.ok and " 0% packet loss" in result.stdout, result.stdout + result.stderr
    assert "wrong data" not in result.stdout
    assert "1408 bytes from" in result.stdout


@TWO_VM
def test_too_large_datagram_is_fragmented_and_reassembled(deployment):
    src, dst = deployment.container("c1"), deployment.container("s1")
    created, reassembled = snmp(src, "FragCreates"), snmp(dst, "ReasmOKs")
    result = src.exec(f"ping -c 2 -W 5 -s 3000 {dst.address}", timeout=30)
    assert result.ok, result.stdout + result.stderr
    assert snmp(src, "FragCreates") - created >= 2 * 3  # 3008 bytes over a 1450 MTU: three fragments each way
    assert snmp(dst, "ReasmOKs") - reassembled >= 2


@TWO_VM
def test_too_large_with_dont_fragment_is_refused_by_the_sender(deployment):
    # the host's own overlay interface has the overlay MTU: the kernel refuses locally and says why
    target = deployment.container("s1")
    result = deployment.host_run(["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1500", target.address])
    assert not result.ok
    assert re.search(r"message too long, mtu=1450", result.stdout + result.stderr), result.stdout + result.stderr


@TWO_VM
def test_rss_spreads_flows_over_the_nic_queues(deployment):
    server = deployment.vm("server")

    def per_queue() -> list[int]:
        stats = server.run("ethtool -S eth0", check=True).stdout
        return [int(n) for _, n in sorted(re.findall(r"rx_queue_(\d+)_packets: (\d+)", stats))]

    before = per_queue()
    assert len(before) == 2, "the server NIC should have two rx queues"
    # 32 UDP flows from the host: each gets its own source port, so its own
    # outer VXLAN source port, so its own hash at the multiqueue tap
    flows = "; ".join(f"echo flow{i} > /dev/udp/{deployment.container('s1').address}/{9000 + i}" for i in range(32))
    for _ in range(3):
        assert deployment.host_run(["bash", "-c", flows]).exit_code == 0
    after = per_queue()
    moved = [b - a for a, b in zip(before, after, strict=True)]
    assert all(m > 0 for m in moved), f"per-queue rx packets moved {moved}: RSS did not spread the flows"


def test_malformed_topology_is_a_clear_error_and_starts_nothing(tmp_path, kernel, guest_image, accel):
    bad = tmp_path / "bad.toml"
    bad.write_text(textwrap.dedent("""
        name = "bad"
        [[overlay]]
        name = "ov0"
        vni = 7
        subnet = "10.9.0.0/24"
        [[vm]]
        name = "a"
        [[vm.container]]
        name = "x"
        overlay = "ov0"
        address = "10.10.0.5"
    """))
    before = netns_names()
    with pytest.raises(ConfigError) as info:
        Deployment(topology_mod.load(bad), kernel, guest_image, accel)
    assert str(info.value) == f"{bad}: vm a container x: address 10.10.0.5 is outside its subnet 10.9.0.0/24"
    assert netns_names() == before


ONE_VM = topology_mod.Topology(
    name="one", vms=(topology_mod.Vm("solo", vcpus=1, memory=384, nics=(topology_mod.Nic(queues=1),),
                                     containers=(topology_mod.Container("k1", "ov0", "10.44.0.5"),)),),
    overlays=(topology_mod.Overlay("ov0", 44, "10.44.0.0/24"),),
    fabric=topology_mod.Fabric(underlay="192.168.79.0/24"))


def test_teardown_leaves_nothing_behind(kernel, guest_image, accel):
    with Deployment(ONE_VM, kernel, guest_image, accel) as deployment:
        run_id, netns = deployment.run_id, deployment.fabric.netns
        assert netns in netns_names()
        assert pids_naming(str(runtime_dir(run_id)))
        assert deployment.container("k1").exec("echo up", check=True).stdout.strip() == "up"
    assert netns not in netns_names()
    assert not pids_naming(str(runtime_dir(run_id)) + "/")
    assert not runtime_dir(run_id).exists()


KILLED_RUN = """
import sys, time
from pathlib import Path
from testbed.vm.accel import AccelChoice
from testbed import Deployment
from testbed.build.image import build_image, load_spec
from testbed.build.kernel import prebuilt
sys.path.insert(0, {cases!r})
from test_topologies import ONE_VM
d = Deployment(ONE_VM, prebuilt(Path({bzimage!r})), build_image(load_spec()), AccelChoice("tcg", False, "test"))
d.up()
print("READY", d.run_id, flush=True)
time.sleep(600)
"""


@TWO_VM
def test_reaper_removes_what_a_killed_run_left_and_nothing_else(kernel, deployment):
    script = KILLED_RUN.format(cases=str(Path(__file__).parent), bzimage=str(kernel.bzimage))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"the doomed run did not come up: {line!r}"
        run_id = line.split()[1]
        os.killpg(proc.pid, signal.SIGKILL)  # no teardown runs: its QEMU and netns stay
        proc.wait()
        time.sleep(0.5)
        assert f"{NETNS_PREFIX}{run_id}" in netns_names()
        assert pids_naming(str(runtime_dir(run_id)) + "/")
        reaped = reap_stale()
        assert any(run_id in r for r in reaped), reaped
        assert f"{NETNS_PREFIX}{run_id}" not in netns_names()
        assert not pids_naming(str(runtime_dir(run_id)) + "/")
        # the live run (this module's topology) was spared
        assert deployment.fabric.netns in netns_names()
        assert deployment.container("c1").exec("echo alive", check=True).stdout.strip() == "alive"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reap_stale()
