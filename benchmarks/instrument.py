"""Is the instrument calibrated? Its false-verdict rate (A/A) and its power (a known, injected effect).

    .venv/bin/python benchmarks/instrument.py [--kernel prism] [--setting pseudo-sync] [--mix overlay-flood]
        [--boots 8] [--rounds 2] [--effect 0.25] [--output results/bench-instrument.json]

Prints figures and writes JSON (and every run's record beside it); asserts nothing.

One kernel (in one PRISM setting, on a PRISM kernel), booted `boots` times,
on one calibrated rate. The default is PRISM in pseudo-sync: its priority
flow loses nothing, so its p99 is defined; vanilla in the regime loses about
half of its priority probes at the backlog, and a p99 that is only a lower
bound on both sides can never be called slower or faster (an A/A there is
inconclusive by construction, which would prove nothing). Every round of a
boot runs three conditions, their order rotated: `plain` (the mix as is),
`plain#2` (the same, again: the A/A's twin within a boot) and `delayed`, the
positive control: the priority flow's requests held at the host's sender
for a fixed delay after they are stamped (HostProber's `hold`: a delay line
outside the guest, so the RTT grows by exactly the delay and the guest sees
the same requests, later), sized on the calibration boot to raise the loaded
priority p99 by `effect`. (A first version put a netem on the container's
egress inside the guest: it *lowered* the p99 by a quarter, since it moved
the replies' transmit into a timer softirq; a control must be outside what
it controls for. A netem on the host tap is the textbook place, but hosts
of this kind have no sch_netem.) Then, with the verdict rules the experiment uses
(testbed.analysis.judge):

- between kernels, the unit is the boot. Every split of the boots into two
  halves is one A/A experiment (plain on one half against plain on the
  other) and two positive-control experiments (delayed on one half against
  plain on the other). The A/A share of verdicts that are not
  "inconclusive" is the false-verdict rate; the control's share of
  "slower", the power. The splits share boots, so they are not independent
  experiments: the shares estimate the rates, with less certainty than
  their count suggests.
- within a boot, the unit is the paired round: plain#2 against plain, and
  delayed against plain, over each half's rounds.
- the design this replaced, for comparison: one boot a side with its rounds
  as the units (Welch), over every pair of boots.
- the power curve: the plain runs again, one side's p99 scaled by
  1 + effect (0 to +100 %), judged at the experiment's default number of
  boots. The noise is the measured one; the effect is multiplicative by
  construction. It says which effect a default experiment can call, where
  the one injected control says whether that size is called.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures

from testbed.analysis import report
from testbed.analysis.judge import BOOT, INCONCLUSIVE, ROUND, judge
from testbed.analysis.latency import SLOWER
from testbed.build.image import build_image, load_spec
from testbed.build.kernel import obtain
from testbed.core.progress import console
from testbed.harness.experiment import DEFAULT_BOOTS
from testbed.net import topology as topology_mod
from testbed.net.deployment import Deployment
from testbed.traffic import mix as mix_mod
from testbed.traffic import prism_knobs
from testbed.traffic.calibrate import calibrate
from testbed.traffic.run import run_mix
from testbed.vm import accel as accel_mod

CONDITIONS = ("plain", "plain#2", "delayed")


def priority_flow(mix: mix_mod.Mix) -> mix_mod.ProbeFlow:
    return mix.flows_of(mix_mod.PRIORITY)[0]


def measure(args, out_dir: Path) -> dict:
    kernel = obtain(args.kernel)
    image = build_image(load_spec())
    choice = accel_mod.choose("auto", kernel.bzimage)
    mix = mix_mod.load(args.mix)
    topo = topology_mod.load(mix.topology)
    mix.validate(topo)
    flow = priority_flow(mix)
    setting = prism_knobs.parse_setting(args.setting) if args.setting else None
    figs: dict = {"kernel": kernel.describe(), "setting": args.setting, "mix": mix.name, "boots": args.boots,
                  "rounds": args.rounds, "effect": args.effect, "runs": {c: [] for c in CONDITIONS}}
    with Deployment(topo, kernel, image, choice) as deployment:  # the calibration boot
        if setting is not None:
            prism_knobs.apply(deployment, setting, mix)
        if mix.needs_calibration:
            cal = calibrate(deployment, mix, choice, kernel=kernel.variant)
            figs["calibration"] = cal.to_dict()
            if cal.rate is None:
                raise SystemExit(f"no regime on this host: {cal.why}")
            mix = mix.with_flood_rate(cal.rate)
        sized = [run_mix(deployment, mix) for _ in range(2)]
        p99 = statistics.median(r.results().tail(flow.name).value for r in sized)
        figs["delay_ms"] = round(args.effect * p99 / 1000, 1)
        console.print(f"loaded {flow.name} p99 {p99 / 1000:.1f} ms: the control adds {figs['delay_ms']} ms")
    for boot in range(1, args.boots + 1):
        with Deployment(topo, kernel, image, choice) as deployment:
            if setting is not None:
                prism_knobs.apply(deployment, setting, mix)
            for round_no in range(1, args.rounds + 1):
                shift = (round_no - 1 + boot - 1) % len(CONDITIONS)
                for cond in CONDITIONS[shift:] + CONDITIONS[:shift]:
                    hold = {flow.name: figs["delay_ms"] / 1000} if cond == "delayed" else None
                    console.print(f"boot {boot}/{args.boots} round {round_no}/{args.rounds}: {cond}")
                    for attempt in range(1, 4):
                        run = run_mix(deployment, mix, hold=hold)
                        rec = report.run_record(run, kernel=kernel, accel=choice, topology=topo, case="instrument",
                                                label=cond)
                        rec.kernel_label, rec.boot, rec.round, rec.attempt = cond, boot, round_no, attempt
                        report.write_record(rec, out_dir / "runs", f"{cond}-b{boot}-r{round_no}-a{attempt}")
                        if run.validity() is None:
                            figs["runs"][cond].append({"boot": boot, "round": round_no,
                                                       "tail": vars(run.results().tail(flow.name))})
                            break
                        console.print(f"  invalid: {run.validity()}")
    return figs


def _tails(figs: dict, cond: str, boots: set[int]) -> list[list]:
    from testbed.analysis.tail import Tail

    by_boot: dict[int, list] = {}
    for r in figs["runs"][cond]:
        if r["boot"] in boots:
            by_boot.setdefault(r["boot"], []).append(Tail(**r["tail"]))
    return [by_boot[b] for b in sorted(by_boot)]


def _paired(figs: dict, a: str, b: str, boots: set[int]) -> tuple[list, list]:
    from testbed.analysis.tail import Tail

    def keyed(cond):
        return {(r["boot"], r["round"]): Tail(**r["tail"]) for r in figs["runs"][cond] if r["boot"] in boots}
    ka, kb = keyed(a), keyed(b)
    keys = sorted(set(ka) & set(kb))
    return [[ka[k]] for k in keys], [[kb[k]] for k in keys]


def _old_gate(v) -> str:
    """The replaced gate: the interval clear of 1 and the *point* ratio at least a tenth away."""
    if v.ci.high < 1 and v.ratio <= 0.9:
        return "faster"
    if v.ci.low > 1 and v.ratio >= 1 / 0.9:
        return SLOWER
    return INCONCLUSIVE


SCALED_EFFECTS = (0.0, 0.05, 0.10, 0.25, 0.50, 1.00)


def _scaled(units: list[list], factor: float) -> list[list]:
    return [[dataclasses.replace(t, value=t.value * factor) for t in unit] for unit in units]


def _disjoint_pairs(boots: list[int], k: int, limit: int = 400) -> list[tuple[set, set]]:
    """Pairs of disjoint k-boot sets, each unordered pair once (the first `limit`, in a fixed order)."""
    out = []
    for first in itertools.combinations(boots, k):
        rest = [b for b in boots if b not in first]
        for second in itertools.combinations(rest, k):
            if first < second:
                out.append((set(first), set(second)))
                if len(out) == limit:
                    return out
    return out


def power_curve(figs: dict, per_side: int) -> list[dict]:
    """Share of "slower" when one side's measured p99 are scaled by 1 + effect (0: the A/A rate).

    The noise is the measured one, boot to boot and round to round; the
    effect is multiplicative by construction (a real patch's may not be).
    Between kernels: plain on `per_side` boots against plain on `per_side`
    others, every such pair. Within boots: plain#2 against plain, paired
    over the rounds of every `per_side` boots.
    """
    boots = sorted({r["boot"] for r in figs["runs"]["plain"]})
    if len(boots) < 2 * per_side:
        return []
    pairs = _disjoint_pairs(boots, per_side)
    subsets = [set(c) for c in itertools.combinations(boots, per_side)]
    rows = []
    for effect in SCALED_EFFECTS:
        factor = 1 + effect
        between = [judge("priority", "treated", _scaled(_tails(figs, "plain", a), factor), "plain",
                         _tails(figs, "plain", b), unit=BOOT).verdict for a, b in pairs]
        within = []
        for part in subsets:
            a, b = _paired(figs, "plain#2", "plain", part)
            within.append(judge("priority", "treated", _scaled(a, factor), "plain", b, unit=ROUND,
                                paired=True).verdict)
        rows.append({"effect": f"+{effect:.0%}",
                     f"between boots ({per_side} a side): slower": round(sum(v == SLOWER for v in between) / len(between), 3),
                     "not inconclusive": round(sum(v != INCONCLUSIVE for v in between) / len(between), 3),
                     f"paired rounds ({per_side} boots): slower": round(sum(v == SLOWER for v in within) / len(within), 3),
                     "not inconclusive ": round(sum(v != INCONCLUSIVE for v in within) / len(within), 3),
                     "experiments": f"{len(between)} / {len(within)}"})
    return rows


def analyse(figs: dict) -> dict:
    boots = sorted({r["boot"] for r in figs["runs"]["plain"]})
    half = len(boots) // 2
    splits = [set(c) for c in itertools.combinations(boots, half) if boots[0] in c]  # each split once
    out: dict[str, list] = {k: [] for k in ("aa_boot", "control_boot", "aa_round", "control_round", "aa_old")}
    for first in splits:
        second = set(boots) - first
        out["aa_boot"].append(judge("priority", "plain", _tails(figs, "plain", second), "plain",
                                    _tails(figs, "plain", first), unit=BOOT).verdict)
        for treated, untreated in ((first, second), (second, first)):
            out["control_boot"].append(judge("priority", "delayed", _tails(figs, "delayed", treated), "plain",
                                             _tails(figs, "plain", untreated), unit=BOOT).verdict)
        for part in (first, second):
            a, b = _paired(figs, "plain#2", "plain", part)
            out["aa_round"].append(judge("priority", "plain#2", a, "plain", b, unit=ROUND, paired=True).verdict)
            a, b = _paired(figs, "delayed", "plain", part)
            out["control_round"].append(judge("priority", "delayed", a, "plain", b, unit=ROUND, paired=True).verdict)
    for i, j in itertools.combinations(boots, 2):  # the replaced design: one boot a side, rounds as units
        # plain and plain#2 are the same condition: a boot's four runs stand in for the old five rounds
        a = [t for c in ("plain", "plain#2") for u in _tails(figs, c, {i}) for t in u]
        b = [t for c in ("plain", "plain#2") for u in _tails(figs, c, {j}) for t in u]
        out["aa_old"].append(_old_gate(judge("priority", "plain", [[t] for t in a], "plain", [[t] for t in b],
                                             unit=ROUND)))
    a, b = _paired(figs, "delayed", "plain", set(boots))
    effect = judge("priority", "delayed", a, "plain", b, unit=ROUND, paired=True)
    rows = []
    for key, what in (("aa_boot", "A/A between boots (the kernel verdict)"),
                      ("control_boot", "control between boots: called slower"),
                      ("aa_round", "A/A within boots, paired rounds (the setting verdict)"),
                      ("control_round", "control within boots, paired rounds: called slower"),
                      ("aa_old", "A/A, the replaced design: one boot a side, rounds as units, gate on the point")):
        verdicts = out[key]
        share = (sum(v == SLOWER for v in verdicts) if "control" in key
                 else sum(v != INCONCLUSIVE for v in verdicts)) / max(1, len(verdicts))
        rows.append({"figure": what, "experiments": len(verdicts), "share": round(share, 3)})
    power = {k: power_curve(figs, k) for k in sorted({DEFAULT_BOOTS, len(boots) // 2})}
    return {"rows": rows, "verdicts": out, "power": power,
            "measured_effect": {"ratio": effect.ratio, "ci": [effect.ci.low, effect.ci.high]},
            "boot_means_ms": {c: [round(statistics.fmean(t.value for t in u) / 1000, 2) for u in _tails(figs, c, set(boots))]
                              for c in CONDITIONS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", default="prism")
    parser.add_argument("--setting", default="pseudo-sync", help="a PRISM setting (on a PRISM kernel), or ''")
    parser.add_argument("--mix", default="overlay-flood")
    parser.add_argument("--boots", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--effect", type=float, default=0.25, help="the control's delay, as a share of the p99")
    parser.add_argument("--output", type=Path, default=Path("results/bench-instrument.json"))
    parser.add_argument("--reanalyse", action="store_true", help="analyse --output again without measuring")
    args = parser.parse_args()
    start = time.monotonic()
    if args.reanalyse:
        import json

        figs = json.loads(args.output.read_text())
    else:
        figs = measure(args, args.output.parent / f"bench-instrument-{time.strftime('%Y%m%d-%H%M%S')}")
        figs["seconds"] = round(time.monotonic() - start)
    figs["analysis"] = analyse(figs)
    what = f"{figs['kernel']} {figs.get('setting') or ''}"
    figures.show(f"instrument: {what}, {figs['boots']} boots x {figs['rounds']} rounds, control "
                 f"+{figs['delay_ms']} ms (measured ratio {figs['analysis']['measured_effect']['ratio']:.3f})",
                 figs["analysis"]["rows"])
    for per_side, curve in figs["analysis"]["power"].items():
        if curve:
            figures.show(f"power against a scaled p99 (the measured runs of plain, one side x (1 + effect)), "
                         f"{per_side} boots a side" + (" (the experiment's default)" if per_side == DEFAULT_BOOTS else ""),
                         curve)
    console.print(f"per-boot mean p99, ms: {figs['analysis']['boot_means_ms']}")
    figures.write(args.output, figs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
