"""testbed.traffic.hostdrops: when the host dropped, and which lost probes that explains."""

from __future__ import annotations

import subprocess
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from testbed.analysis.records import ProbeRecord
from testbed.core.netns import sending_socket
from testbed.traffic.hostdrops import HostDrop, HostDropWatch, backlog_drops, lost_at_host, tx_drops

PROC_NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
 pt1a0: 9000     90    0    3    0     0          0         0   700000   5000    0   42    0     0       0          0
   tp0: 100       1    0    0    0     0          0         0      100      1    0    0    0     0       0          0
"""


def test_tx_drops_reads_the_named_links_tx_drop_column():
    assert tx_drops(PROC_NET_DEV, ["pt1a0", "tp0", "absent"]) == {"pt1a0": 42, "tp0": 0}


def test_backlog_drops_sums_the_second_column_whatever_the_row_length():
    assert backlog_drops("0000a 00000003 0 0\n0000b 00000010 0 0 0 0 0 0 0 0 0 0 1\n\n") == 3 + 16


def _probe(seq: int, sent: int, received: int | None) -> ProbeRecord:
    return ProbeRecord("priority", seq, sent, received, True, True)


def test_a_lost_probe_counts_as_the_hosts_only_when_a_drop_was_seen_just_after_its_send():
    ms = 1_000_000
    records = [_probe(0, 100 * ms, None),   # a drop seen 5 ms later: the host's
               _probe(1, 200 * ms, None),   # nothing within 20 ms after: beyond the host
               _probe(2, 300 * ms, 301 * ms),  # arrived: never counted
               _probe(3, 399 * ms, None)]   # a drop seen 1 ms before its send: not its drop
    drops = [HostDrop(105 * ms, "pt1a0", 3), HostDrop(240 * ms, "backlog", 1), HostDrop(398 * ms, "pt1a0", 1),
             HostDrop(301 * ms, "pt1a0", 9)]
    assert lost_at_host(records, drops) == 1
    assert lost_at_host(records, []) == 0


def test_the_watch_times_drops_in_the_namespace_it_was_given(veth_netns):
    """a0's peer is down, so everything sent on a0 is a tx drop, seen in a0's namespace only."""
    for cmd in ("link set a0 txqueuelen 10", "link set b0 down"):
        subprocess.run(["ip", "-n", veth_netns, *cmd.split()], check=True, timeout=10)
    frame = bytes(Ether(dst="02:00:00:00:00:02") / IP(src="10.99.0.1", dst="10.99.0.2") / UDP() / (b"x" * 64))
    with HostDropWatch(veth_netns, ["a0"], interval=0.002) as watch:
        time.sleep(0.02)
        before = time.time_ns()
        out = sending_socket(veth_netns, "a0")
        try:
            for _ in range(50):
                out.send(frame)
        finally:
            out.close()
        time.sleep(0.05)
    on_a0 = [d for d in watch.drops if d.where == "a0"]
    assert sum(d.count for d in on_a0) == 50, watch.drops
    assert all(d.t_ns >= before for d in on_a0)
