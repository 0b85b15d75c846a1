"""The guest-side layout generated from a topology (pure text, no VM)."""

from __future__ import annotations

import json

from testbed.net import overlay, topology


def test_server_script_lays_out_underlay_vxlan_bridge_and_container_netns():
    topo = topology.load("two-vm")
    script = overlay.guest_network_script(topo, topo.vm("server")).splitlines()
    assert script[0] == "set -e"
    assert "ip addr add 192.168.77.12/24 dev eth0" in script
    assert ("ip link add vx42 mtu 1450 type vxlan id 42 local 192.168.77.12 dstport 4789 nolearning dev eth0"
            in script)
    assert "ip link set vx42 master ob42 up" in script
    # flooding reaches every other endpoint: the client VM and the host traffic port, not itself
    floods = [line for line in script if line.startswith("bridge fdb append 00:00:00:00:00:00")]
    assert sorted(f.split()[-1] for f in floods) == ["192.168.77.11", "192.168.77.2"]
    # static entries for the remote containers only
    statics = {line.split()[3]: line.split()[-1] for line in script if line.startswith("bridge fdb add")}
    assert statics == {"02:42:0a:2a:00:0b": "192.168.77.11", "02:42:0a:2a:00:0c": "192.168.77.11",
                       "02:42:0a:2a:00:01": "192.168.77.2"}  # and the host's overlay endpoint
    for name, mac, address in (("s1", "02:42:0a:2a:00:15", "10.42.0.21"), ("s2", "02:42:0a:2a:00:16", "10.42.0.22")):
        assert f"ip netns add {name}" in script
        assert f"ip link set v-{name} master ob42 up" in script
        assert f"ip -n {name} link set eth0 address {mac} mtu 1450 up" in script
        assert f"ip -n {name} addr add {address}/24 dev eth0" in script


def test_host_endpoint_knows_every_container():
    topo = topology.load("three-vm")
    assert overlay.vteps(topo, "ov0") == {"host": "192.168.78.2", "client1": "192.168.78.11",
                                          "client2": "192.168.78.12", "server": "192.168.78.13"}
    assert len(overlay.remote_macs(topo, "ov0", "host")) == 4
    assert overlay.host_overlay_address(topo, "ov0") == "10.43.0.1"


def test_oci_config_uses_the_prepared_netns_and_a_read_only_root():
    c = topology.Container("c1", "ov0", "10.42.0.11", ("sleep", "infinity"))
    config = overlay.oci_config(c)
    assert {"type": "network", "path": "/run/netns/c1"} in config["linux"]["namespaces"]
    assert {ns["type"] for ns in config["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["process"]["args"] == ["sleep", "infinity"]
    assert "CAP_NET_ADMIN" in config["process"]["capabilities"]["effective"]


def test_container_start_script_detaches_from_the_agent_pipes():
    c = topology.Container("c1", "ov0", "10.42.0.11")
    script = overlay.container_start_script(c)
    run = [line for line in script.splitlines() if line.startswith("crun ")][0]
    assert run.endswith("</dev/null >/run/prism/containers/c1/output.log 2>&1")
    assert "--detach" in run and "--bundle /run/prism/containers/c1 c1" in run
    embedded = script.split("<<'PRISM_EOF'\n")[1].split("\nPRISM_EOF")[0]
    assert json.loads(embedded) == overlay.oci_config(c)
