"""Find the flood rate that puts a booted receiver into the regime (testbed.analysis.regime).

A fixed rate loads a slow host and not a fast one, and a KVM guest not at
all, so a mix may say `rate = "auto"`: before the measured runs, on the
booted deployment, the mix's load (its busy containers, and its floods at
rising rates) runs in short steps while the receiver's stages are watched.
The first rates at which the target CPU's backlog stands, with the stages
before it keeping up, give the operating point. The ramp also measures the
flood generator's own ceiling (the rate at which it stops keeping its
schedule): where that comes first, the host cannot be brought into the
regime with this sender, and the calibration says so instead of guessing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..analysis.regime import Regime
from ..core.errors import VerdictError
from ..core.progress import console
from .bulk import HostFlood
from .mix import Mix
from .run import prepare, receivers, regime_of
from .stagewatch import StageWatch

if TYPE_CHECKING:
    from ..net.deployment import Deployment

START_PPS = 2000.0  # below what any receiver of ours saturates at, TCG included
GROWTH = 1.5  # each step offers this much more: 12 steps span 2k to 170k pps
MAX_STEPS = 12
# Once a rate holds the regime, the next step must hold it too before the point counts:
# a load that is bistable at one rate is not an operating point.
CONFIRM = 2
# A step counts toward the point only if its queue stood in at least this share of its window,
# well above the STANDING_SHARE (75 %) a run needs: a base whose queue stood in 79 % of its
# window put the chosen rate at the regime's edge, and 9 of 20 runs there then missed it.
FIRM_OCCUPANCY = 0.95
# The chosen rate: the base times this. A little above the knee: the queue stands, while the
# host (sender, vCPUs) is loaded no more than it must be.
MARGIN = 1.1
# ... and at least this far below the lowest rate at which a stage before the target dropped
# (the host tap, the NIC, gro_cells): a point 1.1x above its base once sat 10 % under that
# limit, and a CI run there missed the regime three times in a row (gro_cells 2.9 %).
HEADROOM_MARGIN = 1.25
BRACKET_STEPS = 3  # midpoints tried between the last rate without a queue and the first without headroom
SENDER_KEPT = 0.95  # a step whose sender delivered less than this share of its target marks the ceiling
STEP_SETTLE = 1.0  # seconds of flood before a step's window opens
STEP_WINDOW = 2.0  # seconds the step is judged over
# The sender's own ceiling is measured first, by offering doubling rates for a second each
# from CEILING_START: what the receiver cannot take is dropped at the host tap, so only the
# sender's schedule is measured. The ramp then never asks for more than the sender keeps.
CEILING_START = 50_000.0
CEILING_STEPS = 5  # 50k .. 800k pps
CEILING_SECONDS = 1.0


@dataclass(frozen=True)
class Step:
    """One rate of the ramp and what the receiver did with it."""

    target_pps: float
    achieved_pps: float
    late_batches: int
    regime: Regime

    @property
    def sender_kept_up(self) -> bool:
        return self.achieved_pps >= SENDER_KEPT * self.target_pps

    def to_dict(self) -> dict:
        return {"target_pps": round(self.target_pps), "achieved_pps": round(self.achieved_pps),
                "late_batches": self.late_batches, "sender_kept_up": self.sender_kept_up,
                "regime": self.regime.to_dict()}


@dataclass
class Calibration:
    """The ramp's figures and the rate chosen from them (None: the regime was not reached, and why)."""

    mix: str
    rate: float | None
    why: str
    steps: list[Step] = field(default_factory=list)
    sender_ceiling_pps: float | None = None  # the most the sender delivered once it fell behind; None: never fell behind
    host: dict = field(default_factory=dict)
    seconds: float = 0.0
    sender_probe: list[dict] = field(default_factory=list)  # the ceiling's measurement: target, achieved per step
    kernel: str = ""  # the kernel's label in an experiment

    @property
    def reached(self) -> bool:
        return self.rate is not None

    def headroom_limit(self) -> float | None:
        """The lowest rate tried at which a stage before the target dropped (None: none did)."""
        return min((s.target_pps for s in self.steps if not s.regime.headroom), default=None)

    def base(self) -> float | None:
        """The lowest rate that held the regime firmly for CONFIRM steps (None: none did)."""
        found = _base(sorted(self.steps, key=lambda s: s.target_pps))
        return None if found is None else found[0].target_pps

    def to_dict(self) -> dict:
        return {"mix": self.mix, "kernel": self.kernel, "rate": None if self.rate is None else round(self.rate),
                "why": self.why,
                "sender_ceiling_pps": self.sender_ceiling_pps, "sender_probe": self.sender_probe,
                "host": self.host, "seconds": round(self.seconds, 1),
                "constants": {"start_pps": START_PPS, "growth": GROWTH, "confirm": CONFIRM, "margin": MARGIN,
                              "headroom_margin": HEADROOM_MARGIN,
                              "firm_occupancy": FIRM_OCCUPANCY,
                              "sender_kept": SENDER_KEPT, "step_settle": STEP_SETTLE, "step_window": STEP_WINDOW},
                "steps": [s.to_dict() for s in self.steps]}


def choose(steps: list[Step]) -> tuple[float | None, str]:
    """The operating point from a ramp: (rate, why), rate None when the regime was not held.

    Steps are taken in order of rate (a refining step may come last). The
    lowest rate that starts CONFIRM consecutive steps holding the regime
    firmly (queue standing in FIRM_OCCUPANCY of the window) is
    the point's base; the rate chosen is the base times MARGIN, which lies
    below the next step up, so between two rates that both held, but no
    closer than HEADROOM_MARGIN to the lowest rate at which a stage before
    the target dropped (and never below the base). Pure, so the rule is
    unit-tested on made-up ramps.
    """
    ordered = sorted(steps, key=lambda s: s.target_pps)
    found = _base(ordered)
    if found is not None:
        first, last = found
        base = first.target_pps
        why = (f"the regime held from {base:.0f} pps for {CONFIRM} steps "
               f"(occupancy {first.regime.occupancy:.0%} .. {last.regime.occupancy:.0%}); ")
        limit = min((s.target_pps for s in ordered if s.target_pps > base and not s.regime.headroom), default=None)
        if limit is None or base * MARGIN <= limit / HEADROOM_MARGIN:
            return base * MARGIN, why + f"chosen {MARGIN:g}x the first: {base * MARGIN:.0f} pps"
        rate = max(base, limit / HEADROOM_MARGIN)
        return rate, why + (f"chosen {rate:.0f} pps, {HEADROOM_MARGIN:g}x below {limit:.0f} pps where a stage "
                            f"before the target dropped" if rate > base else
                            f"chosen the first: {base:.0f} pps (a stage before the target dropped at "
                            f"{limit:.0f} pps, closer than {HEADROOM_MARGIN:g}x)")
    if not steps:
        return None, "no step ran"
    last = ordered[-1]
    if not last.sender_kept_up:
        return None, (f"the flood generator stopped keeping its schedule at {last.target_pps:.0f} pps "
                      f"(delivered {last.achieved_pps:.0f}) before the receiver held the regime: "
                      f"{last.regime.why}")
    return None, (f"no rate up to {last.target_pps:.0f} pps held the regime for {CONFIRM} steps: {last.regime.why}"
                  + advice(ordered))


# What moves the bottleneck to the stage PRISM acts on, as the shipped mix does it.
LEVERS = ("the target CPU must be the bottleneck while the stages before it keep up: keep the NIC's "
          "interrupts on one CPU (tuning irq = { eth0 = [0] }), steer the decapsulated overlay traffic to "
          "another (rps = { ov0 = [1] }) and give that CPU per-packet work (ingress-rules = { s2 = 2000 } on the "
          "bulk container), as cases/mixes/overlay-flood.toml does")


def advice(ordered: list[Step], nearest: int = 3) -> str:
    """The rates that came closest (the queue stood, but a stage before it dropped), why they did not
    hold, and what to change in the mix."""
    near = sorted((s for s in ordered if s.regime.standing and s.sender_kept_up),
                  key=lambda s: max(s.regime.tap_drop_share, s.regime.nic_drop_share, s.regime.gro_cells_drop_share))
    parts = []
    for s in near[:nearest]:
        g = s.regime
        drops = ", ".join(f"{name} dropped {share:.2%}" for name, share in (
            ("host tap", g.tap_drop_share), ("NIC", g.nic_drop_share), ("gro_cells", g.gro_cells_drop_share))
            if share > 0) or "no drop before it"
        parts.append(f"{s.target_pps:.0f} pps (queue stood in {g.occupancy:.0%}; {drops})")
    if not parts:
        return f". The target CPU's queue never stood. To fix: {LEVERS}"
    knee = min(s.target_pps for s in near)
    limit = min((s.target_pps for s in ordered if not s.regime.headroom), default=None)
    window = ""
    if limit is not None and limit > knee:
        window = (f". The queue stood from {knee:.0f} pps and a stage before it dropped from {limit:.0f} pps: "
                  f"a window of {limit / knee:.2f}x, too narrow for {CONFIRM} steps in a row. More per-packet work "
                  "on the target CPU (more ingress-rules on the bulk container) brings its knee down, away "
                  "from the stages before it")
    return f". Closest: {'; '.join(parts)}{window}. The levers: {LEVERS}"


def common_rate(calibrations: Sequence[Calibration]) -> tuple[float | None, str]:
    """The one rate every condition of an experiment is measured at, from each one's own calibration.

    The highest chosen rate, so the queue stands in every condition (a rate
    at the knee of the condition with less capacity leaves none in one with
    more), as long as it stays HEADROOM_MARGIN below every condition's
    headroom limit (the stages before the target keep up in all: a PRISM
    setting that classifies every packet costs the NIC's CPU more than off
    does). No such rate: None, and why.
    """
    failed = [c for c in calibrations if not c.reached]
    if failed:
        return None, "; ".join(f"{c.kernel or c.mix}: {c.why}" for c in failed)
    rate = max(c.rate for c in calibrations)
    limits = [(c.headroom_limit(), c) for c in calibrations if c.headroom_limit() is not None]
    tight = [(limit, c) for limit, c in limits if rate > limit / HEADROOM_MARGIN and limit > (c.base() or 0)]
    rates = ", ".join(f"{c.kernel} {c.rate:.0f}" for c in calibrations)
    if tight:
        limit, c = min(tight, key=lambda x: x[0])
        return None, (f"no common rate: the points are {rates} pps, and {rate:.0f} pps lies within "
                      f"{HEADROOM_MARGIN:g}x of {limit:.0f} pps, where a stage before the target dropped on {c.kernel}")
    return rate, f"the highest of the points ({rates} pps), so the queue stands in every condition"


def _base(ordered: list[Step]) -> tuple[Step, Step] | None:
    """The first and last of the lowest CONFIRM consecutive steps (by rate) that held the regime firmly."""
    held = [s.regime.valid and s.sender_kept_up and s.regime.occupancy >= FIRM_OCCUPANCY for s in ordered]
    for i in range(len(ordered) - CONFIRM + 1):
        if all(held[i:i + CONFIRM]):
            return ordered[i], ordered[i + CONFIRM - 1]
    return None


def refinement(steps: list[Step]) -> float | None:
    """The geometric middle of the chosen base and the highest step below it (which did not hold).

    The ramp's steps are GROWTH apart, so the base can lie up to GROWTH
    above the knee; one geometric midpoint halves that. A point closer to
    the knee offers less than it needs to, so the host's own load (sender,
    vCPUs) stays lower at the same regime.
    """
    found = _base(sorted(steps, key=lambda s: s.target_pps))
    if found is None:
        return None
    base = found[0].target_pps
    below = [s.target_pps for s in steps if s.target_pps < base]
    return (max(below) * base) ** 0.5 if below else None


def should_stop(steps: list[Step]) -> bool:
    """The ramp ends once a point is found, the sender falls behind, or a stage before the target drops."""
    last = steps[-1]
    if choose(steps)[0] is not None or not last.sender_kept_up:
        return True
    # a stage before the target dropping in two steps running (one may be a host hiccup): higher
    # rates only move the queue further out of the guest
    return len(steps) >= 2 and not (steps[-1].regime.headroom or steps[-2].regime.headroom)


@contextmanager
def _busy(deployment: Deployment, mix: Mix):
    """The mix's CPU-bound containers, running for the whole ramp."""
    for hog in mix.hogs:
        deployment.container(hog.container).spawn(hog.start_command(), log=f"/tmp/hog-{hog.name}.log")
    try:
        yield
    finally:
        for hog in mix.hogs:
            deployment.container(hog.container).exec(hog.stop_command())


def bracket(steps: list[Step]) -> tuple[float, float] | None:
    """Rates (low, high) to search between when no point was found: the window may be narrower than a step.

    low is the highest rate whose stages before the target kept up, high the
    next rate tried, whose stages before the target dropped. The knee of the
    target and the limit of the stages before it can lie within one GROWTH
    of each other; a rate between them that holds needs one above it that
    holds too (CONFIRM), so the search goes on between that rate and high.
    """
    if choose(steps)[0] is not None:
        return None
    ordered = sorted(steps, key=lambda s: s.target_pps)
    for lower, upper in zip(ordered, ordered[1:], strict=False):
        if lower.regime.headroom and not upper.regime.headroom:
            return lower.target_pps, upper.target_pps
    return None


def _step(deployment: Deployment, mix: Mix, rate: float) -> Step:
    loaded = mix.with_flood_rate(rate)
    with StageWatch(deployment, receivers(deployment, loaded)) as watch:
        with ExitStack() as stack:
            floods = [stack.enter_context(HostFlood(deployment, spec)) for spec in loaded.floods]
            time.sleep(STEP_SETTLE)
            watch.mark_window()
            time.sleep(STEP_WINDOW)
            watch.mark_window()
    reports = [f.report for f in floods]
    achieved = sum(r.achieved_pps for r in reports)
    regime = regime_of(loaded, watch.result, deployment.topology)
    return Step(rate, achieved, sum(r.late_batches for r in reports), regime)


def sender_ceiling(deployment: Deployment, mix: Mix) -> tuple[float | None, list[dict]]:
    """The flood generator's ceiling on this host: (most it delivered once it fell behind, every step)."""
    steps = []
    rate = CEILING_START
    for _ in range(CEILING_STEPS):
        with ExitStack() as stack:
            floods = [stack.enter_context(HostFlood(deployment, spec)) for spec in mix.with_flood_rate(rate).floods]
            time.sleep(CEILING_SECONDS)
        achieved = sum(f.report.achieved_pps for f in floods)
        steps.append({"target_pps": round(rate), "achieved_pps": round(achieved)})
        if achieved < SENDER_KEPT * rate:
            return max(s["achieved_pps"] for s in steps), steps
        rate *= 2
    return None, steps


def host_facts(accel) -> dict:
    """What the rate depends on besides the guest: the accelerator, vhost, the host's cores and load."""
    facts = {"cpus": os.cpu_count(), "loadavg": round(os.getloadavg()[0], 2)}
    if accel is not None:
        facts |= {"accel": accel.accel, "vhost": accel.vhost}
    return facts


def calibrate(deployment: Deployment, mix: Mix, accel=None, kernel: str = "", *, start: float = START_PPS,
              sender: tuple[float | None, list[dict]] | None = None) -> Calibration:
    """Ramp the mix's "auto" floods on a booted deployment and choose its operating point.

    kernel names what was calibrated (a kernel, or a kernel in one setting).
    start: the ramp's first rate (a later condition on the same boot starts
    near the first one's knee); sender: the flood generator's ceiling and
    its measurement when this boot already took them.
    """
    if not mix.needs_calibration:
        raise VerdictError(f"mix {mix.name}: no flood says rate = \"auto\": nothing to calibrate")
    mix.validate(deployment.topology)
    prepare(deployment, mix.with_flood_rate(START_PPS))
    began = time.monotonic()
    ceiling, probe = sender if sender is not None else sender_ceiling(deployment, mix)
    console.print(f"calibrate {mix.name}: flood generator ceiling "
                  + (f"{ceiling:.0f} pps" if ceiling else f"above {probe[-1]['target_pps'] if probe else '?'} pps"))
    steps: list[Step] = []
    with _busy(deployment, mix):
        rate = start
        for _ in range(MAX_STEPS):
            if ceiling is not None and rate > ceiling:
                break
            step = _step(deployment, mix, rate)
            steps.append(step)
            console.print(f"calibrate {mix.name}: {rate:.0f} pps offered, {step.achieved_pps:.0f} sent: "
                          f"{step.regime.why}")
            if should_stop(steps):
                break
            rate *= GROWTH
        middle = refinement(steps)
        if middle is not None:
            steps.append(_step(deployment, mix, middle))
            console.print(f"calibrate {mix.name}: {middle:.0f} pps (refining) offered, "
                          f"{steps[-1].achieved_pps:.0f} sent: {steps[-1].regime.why}")
        for _ in range(BRACKET_STEPS):
            window = bracket(steps)
            if window is None:
                break
            middle = (window[0] * window[1]) ** 0.5
            steps.append(_step(deployment, mix, middle))
            console.print(f"calibrate {mix.name}: {middle:.0f} pps (between {window[0]:.0f} and {window[1]:.0f}) "
                          f"offered, {steps[-1].achieved_pps:.0f} sent: {steps[-1].regime.why}")
        # a point the search found has not been refined towards the knee yet
        middle = refinement(steps)
        if middle is not None and all(abs(s.target_pps - middle) > 1 for s in steps):
            steps.append(_step(deployment, mix, middle))
            console.print(f"calibrate {mix.name}: {middle:.0f} pps (refining) offered, "
                          f"{steps[-1].achieved_pps:.0f} sent: {steps[-1].regime.why}")
    chosen, why = choose(steps)
    if chosen is None and ceiling is not None and steps and steps[-1].target_pps * GROWTH > ceiling:
        why = (f"the flood generator's ceiling ({ceiling:.0f} pps on this host) came before the regime: a faster "
               f"source is needed; {why}")
    return Calibration(mix.name, chosen, why, steps, ceiling, host_facts(accel), time.monotonic() - began, probe,
                       kernel)


def calibrated(mix: Mix, calibration: Calibration) -> Mix:
    """The mix at the calibrated rate; VerdictError naming why when the regime was not reached."""
    if calibration.rate is None:
        raise VerdictError(f"mix {mix.name}: this host could not be brought into the regime: {calibration.why}")
    return mix.with_flood_rate(calibration.rate)
