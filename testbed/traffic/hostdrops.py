"""When the host itself dropped, so a lost probe can be told from one the guest lost.

Everything the host puts between the prober and a guest is FIFO and blind to
PRISM's mark: the tap's queue towards the guest (its tx drops: QEMU did not
drain it in time) and the host's own softnet backlogs (the fabric's veths
pass every frame to and from the traffic port through them). A priority
probe dropped there says nothing about the guest's kernel. Totals cannot
tell which probes those were; a timeline can: a thread samples the fabric
namespace's /proc/net/dev and the host's /proc/net/softnet_stat every few
milliseconds and keeps each increase with its time. A lost probe whose send
time falls just before such an increase is counted as lost on the host
(`lost_at_host`), the rest as lost beyond it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..analysis.records import ProbeRecord
from ..core.netns import proc_net_fd

SAMPLE_S = 0.005
# A drop is seen at the first sample after it, up to SAMPLE_S late (plus a busy host's
# scheduling delay); a probe reaches the tap within microseconds of its send. So a probe
# sent up to this long before an increase was seen may be among the frames it counts.
ATTRIBUTION_NS = 20_000_000


@dataclass(frozen=True)
class HostDrop:
    """An increase of a host drop counter, seen at t_ns (CLOCK_REALTIME, as probe send times)."""

    t_ns: int
    where: str  # a tap's name (its tx drops: towards the guest) or "backlog" (the host's softnet)
    count: int

    def as_list(self) -> list:
        return [self.t_ns, self.where, self.count]


def tx_drops(proc_net_dev: str, names: Iterable[str]) -> dict[str, int]:
    """The tx drop counter of each named link in /proc/net/dev text (links not there are left out)."""
    wanted, out = set(names), {}
    for line in proc_net_dev.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        name = name.strip()
        if name in wanted:
            fields = numbers.split()
            out[name] = int(fields[11])  # rx: 8 fields, then tx bytes, packets, errs, drop
    return out


def backlog_drops(softnet_stat: str) -> int:
    """The host's backlog drops over all CPUs: /proc/net/softnet_stat's second column.

    Only that column is read: it has stood there in every kernel, while the
    row's length varies by version, and the host runs whatever kernel the
    user has (testbed.analysis.stages parses the guest's 6.1 rows in full).
    """
    return sum(int(line.split()[1], 16) for line in softnet_stat.splitlines() if line.strip())


def lost_at_host(records: Sequence[ProbeRecord], drops: Sequence[HostDrop],
                 window_ns: int = ATTRIBUTION_NS) -> int:
    """How many of the lost probes in records were sent within window_ns before a host drop was seen."""
    times = sorted(d.t_ns for d in drops)
    count = 0
    for r in records:
        if r.received_ns is None and any(r.sent_ns <= t <= r.sent_ns + window_ns for t in times):
            count += 1
    return count


@dataclass
class HostDropWatch:
    """Samples the host's drop counters in a thread between __enter__ and __exit__."""

    netns: str
    taps: Sequence[str]
    interval: float = SAMPLE_S
    drops: list[HostDrop] = field(default_factory=list)

    def __enter__(self) -> HostDropWatch:
        self._dev = proc_net_fd(self.netns, "dev")
        self._softnet = os.open("/proc/net/softnet_stat", os.O_RDONLY | os.O_CLOEXEC)
        self._stop = threading.Event()
        self._last = self._read()
        self._thread = threading.Thread(target=self._run, name="host-drops", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        os.close(self._dev)
        os.close(self._softnet)

    def _read(self) -> dict[str, int]:
        counts = tx_drops(os.pread(self._dev, 1 << 20, 0).decode(), self.taps)
        counts["backlog"] = backlog_drops(os.pread(self._softnet, 1 << 16, 0).decode())
        return counts

    def _sample(self) -> None:
        now, counts = time.time_ns(), self._read()
        for where, value in counts.items():
            if value > self._last.get(where, value):
                self.drops.append(HostDrop(now, where, value - self._last[where]))
        self._last = counts

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
