"""The regime a loaded run must prove before its latencies count.

PRISM acts on the softnet backlog of the CPU that overlay traffic is steered
to. A loaded run says something about PRISM only when, while the probes
were sent, a queue *stood* there (not one sampled burst) and the stages
before it kept up, so the time a probe lost was lost where PRISM acts. A
run that misses this is invalid: it is recorded with the reason and counted
in no verdict. Pure: it judges counters that testbed.traffic.stagewatch collected.
"""

from __future__ import annotations

from dataclasses import dataclass

# A sample counts as "queued" at this share of netdev_max_backlog (100 of the default 1000).
# One backlog poll drains up to 64 packets (its NAPI weight), so a backlog of 100 or more is
# more than the CPU works off in one go: packets wait behind others, which is what PRISM skips.
STANDING_LEVEL = 0.10
# The backlog must be at or above that level in this share of the window's samples. Under TCG
# a busy CPU's softirq work comes in turns, so the queue dips between them; three quarters of
# the time queued is a queue that stands, where a bistable load that escaped saw a few percent.
STANDING_SHARE = 0.75
# The stages before the target (host tap, guest NIC, VXLAN gro_cells) may drop at most this
# share of what reached them: a queue that forms there is FIFO and outside PRISM's reach, and
# a few drops in a 20-second load of tens of thousands of packets do not move a p99.
HEADROOM_DROP_SHARE = 0.01


@dataclass(frozen=True)
class WindowBacklog:
    """One CPU's softnet backlog over the measured window (prism-stagemon's `window` line)."""

    cpu: int
    samples: int
    peak: int
    mean: float
    above: int  # samples at or above the stagemon's threshold
    dropped: int
    squeeze: int
    processed: int
    usec: int

    @property
    def occupancy(self) -> float:
        return self.above / self.samples if self.samples else 0.0


@dataclass(frozen=True)
class Regime:
    """Whether a loaded run stood where PRISM acts, with headroom before it, and why (not)."""

    required: bool  # False: the mix has no flood, so no queue is promised (e.g. a goodput mix)
    valid: bool
    why: str
    standing: bool = False  # the target CPU's backlog stood through the window
    headroom: bool = True  # the stages before it dropped no more than HEADROOM_DROP_SHARE
    vm: str = ""
    target_cpus: tuple[int, ...] = ()
    level: int = 0  # packets: the occupancy threshold
    occupancy: float = 0.0  # share of window samples at or above level on the target CPU(s)
    backlog_mean: float = 0.0
    backlog_drops: int = 0  # on the target CPU(s), in the window
    window_seconds: float = 0.0
    tap_drop_share: float = 0.0
    nic_drop_share: float = 0.0
    gro_cells_drop_share: float = 0.0

    def to_dict(self) -> dict:
        return {"required": self.required, "valid": self.valid, "why": self.why, "standing": self.standing,
                "headroom": self.headroom, "vm": self.vm,
                "target_cpus": list(self.target_cpus), "level": self.level, "occupancy": round(self.occupancy, 3),
                "backlog_mean": round(self.backlog_mean, 1), "backlog_drops": self.backlog_drops,
                "window_seconds": round(self.window_seconds, 2),
                "tap_drop_share": round(self.tap_drop_share, 4), "nic_drop_share": round(self.nic_drop_share, 4),
                "gro_cells_drop_share": round(self.gro_cells_drop_share, 4),
                "thresholds": {"standing_level": STANDING_LEVEL, "standing_share": STANDING_SHARE,
                               "headroom_drop_share": HEADROOM_DROP_SHARE}}

    @classmethod
    def not_required(cls, why: str) -> Regime:
        return cls(required=False, valid=True, why=why)


def level_for(netdev_max_backlog: int) -> int:
    """The backlog length (packets) a sample must reach to count as queued."""
    return max(1, round(STANDING_LEVEL * netdev_max_backlog))


def _share(dropped: int, total: int) -> float:
    return dropped / total if total > 0 else (1.0 if dropped else 0.0)


def judge(stages, target_cpus: tuple[int, ...]) -> Regime:
    """The regime of one receiving VM's stages (stagewatch.VmStages) around a loaded window.

    target_cpus are the CPUs the overlay's traffic is steered to (the mix's
    RPS tuning); empty means "whichever CPU queued most", said in the reason.
    """
    window = {w.cpu: w for w in stages.window}
    if not window:
        return Regime(required=True, valid=False, vm=stages.vm,
                      why=f"invalid: {stages.vm}: no backlog samples in the measured window (stagemon window empty)")
    chosen = tuple(c for c in target_cpus if c in window)
    if not chosen:
        chosen = (max(window.values(), key=lambda w: w.occupancy).cpu,)
    samples = sum(window[c].samples for c in chosen)
    above = sum(window[c].above for c in chosen)
    occupancy = above / samples if samples else 0.0
    mean = sum(window[c].mean * window[c].samples for c in chosen) / samples if samples else 0.0
    drops = sum(window[c].dropped for c in chosen)
    seconds = max(window[c].usec for c in chosen) / 1e6
    tap = _share(stages.tap_dropped, stages.tap_to_guest + stages.tap_dropped)
    nic = _share(stages.nic_dropped, stages.nic_rx + stages.nic_dropped)
    gro = _share(sum(stages.gro_cells_dropped.values()), stages.nic_rx)
    cpus = ",".join(map(str, chosen)) + ("" if target_cpus else " (busiest; the mix pins no RPS CPU)")
    figures = (f"cpu{cpus} backlog >= {stages.level} in {occupancy:.0%} of {samples} samples over {seconds:.1f}s "
               f"(mean {mean:.0f}, {drops} backlog drops); drops before it: tap {tap:.2%}, nic {nic:.2%}, "
               f"gro_cells {gro:.2%}")
    problems = []
    standing = occupancy >= STANDING_SHARE
    if not standing:
        problems.append(f"no standing queue (needs >= {STANDING_SHARE:.0%} of samples)")
    short = [(stage, share) for stage, share in (("host tap", tap), ("nic", nic), ("gro_cells", gro))
             if share > HEADROOM_DROP_SHARE]
    problems += [f"{stage} dropped {share:.2%} (> {HEADROOM_DROP_SHARE:.0%}: a queue before the target)"
                 for stage, share in short]
    valid = not problems
    why = (f"standing: {figures}" if valid else f"invalid: {'; '.join(problems)}: {figures}")
    return Regime(required=True, valid=valid, why=f"{stages.vm}: {why}", standing=standing, headroom=not short,
                  vm=stages.vm, target_cpus=chosen,
                  level=stages.level, occupancy=occupancy, backlog_mean=mean, backlog_drops=drops,
                  window_seconds=seconds, tap_drop_share=tap, nic_drop_share=nic, gro_cells_drop_share=gro)
