"""Stage accounting from snapshots: what moved where, and what it says about the load."""

from __future__ import annotations

from testbed.analysis.regime import WindowBacklog
from testbed.analysis.stages import LinkStats, SoftnetRow
from testbed.net import topology as topology_mod
from testbed.traffic.stagewatch import (
    BacklogSample,
    Snapshot,
    Stagemon,
    VmCounters,
    host_drops_between,
    irq_script,
    parse_prism_stat,
    parse_stagemon,
    rps_script,
    stages_between,
)


def test_parse_stagemon():
    out = ("cpu 0 samples 100 peak 3 mean 0.10 nonempty 4\ncpu 1 samples 100 peak 1195 mean 39.60 nonempty 38\n"
           "window cpu 1 samples 40 peak 1000 mean 512.50 above 35 dropped 120 squeeze 3 processed 9000 usec 200000\n"
           "bin 0 cpu 1 samples 20 mean 400.00 above 15 dropped 20\n"
           "window cpu 1 samples forty\n")
    mon = parse_stagemon(out)
    assert mon.run == [BacklogSample(0, 100, 3, 0.1, 4), BacklogSample(1, 100, 1195, 39.6, 38)]
    assert mon.window == [WindowBacklog(1, 40, 1000, 512.5, 35, 120, 3, 9000, 200000)]
    assert mon.window[0].occupancy == 35 / 40
    assert mon.bins == [{"bin": 0, "cpu": 1, "samples": 20, "mean": 400.0, "above": 15, "dropped": 20}]
    assert parse_stagemon("garbage\n") == Stagemon()


def test_parse_prism_stat_totals_over_cpus():
    text = "cpu classified prio_enqueued\n0 5 2\n1 7 1\n"
    assert parse_prism_stat(text) == {"classified": 12, "prio_enqueued": 3}
    assert parse_prism_stat(None) == {} and parse_prism_stat("  \n") == {}


def link(name, rx=0, rxd=0, tx=0, txd=0):
    return LinkStats(name, rx, rxd, tx, txd)


def row(cpu, processed=0, dropped=0, squeeze=0):
    return SoftnetRow(cpu, processed, dropped, squeeze, 0, 0, 0)


def snapshot(tap_tx, tap_drop, vx_drop, backlog_drop, rcvbuf, squeeze=0):
    counters = VmCounters(
        softnet=[row(0, 100), row(1, 200, backlog_drop, squeeze)],
        links={"eth0": link("eth0", rx=tap_tx), "vx42": link("vx42", rxd=vx_drop), "v-s1": link("v-s1")},
        snmp={"s1": {"InDatagrams": 10, "RcvbufErrors": rcvbuf, "InErrors": rcvbuf}},
        prism_stat=None)
    return Snapshot(taps={"server": link("tap1", tx=tap_tx, txd=tap_drop)}, vms={"server": counters})


def test_stages_between_takes_deltas_per_stage():
    topo = topology_mod.load("two-vm")
    before = snapshot(1000, 5, 1, 2, 0)
    after = snapshot(61000, 5, 301, 802, 40, squeeze=9)
    mon = Stagemon([BacklogSample(1, 10, 900, 300.0, 9)], [WindowBacklog(1, 10, 900, 300.0, 9, 800, 9, 5000, 10**6)])
    s = stages_between(before, after, {"server": mon}, topo, {"server": 100})["server"]
    assert (s.tap_to_guest, s.tap_dropped, s.nic_rx) == (60000, 0, 60000)
    # all 300 of vx42's drops were the backlog refusing RPS's hop (800 backlog drops, none at a veth)
    assert s.gro_cells_dropped == {"vx42": 0} and s.softnet["dropped"] == 800 and s.softnet["time_squeeze"] == 9
    assert s.sockets["s1"]["RcvbufErrors"] == 40
    assert s.peak_backlog == 900 and s.queued_in_guest and s.level == 100
    assert s.guest_drops == 800 + 40
    assert "cpu1 backlog >= 100 in 90% of the window" in s.where() and "tap 0" in s.where()
    assert s.to_dict()["queued_in_guest"] is True


def test_one_sampled_burst_is_not_a_queue_in_the_guest():
    """The defect a fast host showed: one sample of 98 and socket drops read as 'saturated'."""
    topo = topology_mod.load("two-vm")
    mon = Stagemon([BacklogSample(1, 400, 98, 3.5, 30)], [WindowBacklog(1, 400, 98, 3.5, 1, 0, 0, 9000, 2 * 10**6)])
    s = stages_between(snapshot(10, 0, 0, 0, 0), snapshot(20, 0, 0, 0, 318), {"server": mon}, topo,
                       {"server": 100})["server"]
    assert not s.queued_in_guest


def test_a_queue_only_in_the_host_tap_is_not_a_queue_in_the_guest():
    topo = topology_mod.load("two-vm")
    s = stages_between(snapshot(10, 0, 0, 0, 0), snapshot(20, 5000, 0, 0, 0), {}, topo)["server"]
    assert s.tap_dropped == 5000 and not s.queued_in_guest


def test_rps_script_writes_the_cpu_mask_to_every_rx_queue():
    script = rps_script("vx42", (1, 3))
    assert "echo a > $q/rps_cpus" in script and "/sys/class/net/vx42/queues/rx-*" in script


def test_irq_script_routes_only_that_nics_queue_interrupts_and_fails_without_any():
    script = irq_script("eth0", (0, 1))
    assert "readlink /sys/class/net/eth0/device" in script
    assert "echo 0,1 > /proc/irq/$i/smp_affinity_list" in script
    assert '" "v"-(input|output)' in script  # virtio2's queues, not virtio12's or its config vector
    assert "[ $n -gt 0 ] ||" in script and "exit 1" in script


def test_softirq_share_per_cpu():
    from testbed.traffic.stagewatch import parse_proc_stat
    before = parse_proc_stat("cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 0 10 70 0 0 10 0 0 0\ncpu1 0 0 0 100 0 0 0 0 0 0\n")
    after = parse_proc_stat("cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 20 0 20 80 0 0 80 0 0 0\ncpu1 0 0 0 200 0 0 0 0 0 0\n")
    assert before[0] == (10, 70, 100) and after[0] == (80, 80, 200)
    topo = topology_mod.load("two-vm")
    b, a = snapshot(1, 0, 0, 0, 0), snapshot(2, 0, 0, 0, 0)
    b = Snapshot(b.taps, {"server": VmCounters(**{**b.vms["server"].__dict__, "cpu_times": before})})
    a = Snapshot(a.taps, {"server": VmCounters(**{**a.vms["server"].__dict__, "cpu_times": after})})
    s = stages_between(b, a, {}, topo)["server"]
    assert s.softirq_share == {0: 0.7, 1: 0.0}
    assert s.busy_share == {0: 0.9, 1: 0.0}


def test_backlog_drops_charged_to_the_vxlan_device_are_not_gro_cells_drops():
    from testbed.traffic.stagewatch import gro_cells_drops
    # 1000 backlog drops: 400 at the veth hop (veth tx_dropped), so 600 at the VXLAN hop, charged to vx42
    assert gro_cells_drops({"vx42": 700}, backlog_dropped=1000, veth_tx_dropped=400) == {"vx42": 100}
    assert gro_cells_drops({"vx42": 50}, backlog_dropped=1000, veth_tx_dropped=0) == {"vx42": 0}
    assert gro_cells_drops({"vx42": 50}, backlog_dropped=0, veth_tx_dropped=0) == {"vx42": 50}


def test_host_drops_name_the_host_backlog_and_each_fabric_link_that_dropped():
    """Where a probe is lost outside every guest: the host's backlogs and the fabric's links."""
    before = Snapshot({}, {}, {"tp0": link("tp0", rxd=3), "tp0-br": link("tp0-br", txd=1), "pt1": link("pt1")},
                      10)
    after = Snapshot({}, {}, {"tp0": link("tp0", rxd=7), "tp0-br": link("tp0-br", txd=1), "pt1": link("pt1", txd=2),
                              "new0": link("new0", rxd=9)},
                     17)
    assert host_drops_between(before, after) == {"backlog": 7, "tp0": 4, "pt1": 2}
    quiet = Snapshot({}, {}, {"tp0": link("tp0")}, 3)
    assert host_drops_between(quiet, quiet) == {}
