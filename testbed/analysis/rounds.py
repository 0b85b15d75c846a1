"""The verdicts an experiment's run records give, and verdict.json.

Which comparisons, and over which unit (testbed.analysis.judge says how one is made):
- every condition of a kernel against its counterpart on the baseline
  kernel, over *boots* (the same PRISM setting where the baseline has it,
  else the baseline's only or reference condition);
- every PRISM setting of a kernel against its reference setting (off when
  measured, else the first) on the same boots, paired *round* by round;
- each priority-class flow against the first bulk-class flow of the same
  runs, paired round by round.
Only loaded runs whose regime was valid count (testbed.analysis.counted); a
flow's percentile counts its lost probes (testbed.analysis.tail). Plain data in and
out; write_verdict_json is the only I/O.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.cache import atomic_write_text
from ..core.errors import VerdictError
from .counted import flows_of_class, loaded_mix, loaded_runs, run_problem, value_of
from .judge import BOOT, INCONCLUSIVE, MIN_UNITS, PRACTICAL_MINIMUM, ROUND, Verdict, judge, welch_interval
from .latency import DEFAULT_LEVEL, Interval
from .records import JsonData, plain
from .run_record import RunRecord
from .tail import Tail

SCHEMA = "prism-testbed/verdict/2"
REFERENCE_SETTING = "off"

__all__ = ["INCONCLUSIVE", "PRACTICAL_MINIMUM", "SCHEMA", "Condition", "Rise", "conditions_of",
           "rise_over_rounds", "verdict_rows", "verdicts_from_records", "write_verdict_json"]


@dataclass(frozen=True)
class Condition:
    """A label of the records, and the kernel and PRISM setting it stands for."""

    label: str
    kernel: str
    setting: str | None


def conditions_of(records: Sequence[RunRecord]) -> list[Condition]:
    """The conditions the records name, in the order they first appear."""
    out: dict[str, Condition] = {}
    for r in records:
        out.setdefault(r.label, Condition(r.label, r.kernel_name, r.setting))
    return list(out.values())


def default_baseline(conditions: Sequence[Condition]) -> str:
    """vanilla where it was measured (older records), else the first kernel."""
    kernels = list(dict.fromkeys(c.kernel for c in conditions))
    return "vanilla" if "vanilla" in kernels else kernels[0]


def _reference(conds: Sequence[Condition]) -> Condition:
    return next((c for c in conds if c.setting == REFERENCE_SETTING), conds[0])


def _counterpart(cond: Condition, base: Sequence[Condition]) -> Condition:
    if len(base) == 1:
        return base[0]
    return next((c for c in base if c.setting == cond.setting), _reference(base))


def verdicts_from_records(records: Sequence[RunRecord], *, baseline: str | None = None, percentile: float = 99,
                          level: float = DEFAULT_LEVEL, practical: float = PRACTICAL_MINIMUM,
                          mix: str | None = None) -> list[Verdict]:
    """Kernels against the baseline (boots), settings against their reference (rounds), priority against bulk."""
    mix = loaded_mix(records, mix)
    seen = [r for r in records if r.mix["loaded"] and r.mix["name"] == mix]
    valid = loaded_runs(records, mix)
    conds = conditions_of(seen)
    baseline = baseline or default_baseline(conds)
    by_kernel: dict[str, list[Condition]] = {}
    for c in conds:
        by_kernel.setdefault(c.kernel, []).append(c)
    if baseline not in by_kernel:
        raise VerdictError(f"baseline {baseline!r} has no loaded runs (kernels: {', '.join(by_kernel)})")
    priority = flows_of_class(seen, "priority")
    common = dict(percentile=percentile, level=level, practical=practical)
    return (_kernel_verdicts(valid, by_kernel, baseline, priority, common)
            + _setting_verdicts(valid, by_kernel, priority, common)
            + _flow_verdicts(valid, seen, conds, priority, common))


Valid = Mapping[str, Mapping[tuple[int, int], RunRecord]]


def _kernel_verdicts(valid: Valid, by_kernel: Mapping[str, list[Condition]], baseline: str,
                     priority: Sequence[str], common: dict) -> list[Verdict]:
    """Every condition of every other kernel against its counterpart on the baseline, over boots."""
    p = common["percentile"]
    return [judge(flow, cond.label, _boots(valid, cond.label, flow, p), base.label,
                  _boots(valid, base.label, flow, p), unit=BOOT, **common)
            for flow in priority for kernel, mine in by_kernel.items() if kernel != baseline
            for cond in mine for base in [_counterpart(cond, by_kernel[baseline])]]


def ablated_from(cond: Condition, conds: Sequence[Condition]) -> Condition | None:
    """For an ablation setting (`pseudo-sync+no-local`), the full mode measured beside it (`pseudo-sync`)."""
    if not cond.setting or "+" not in cond.setting:
        return None
    mode, *extras = cond.setting.split("+")
    if not extras or not all(e.startswith("no-") for e in extras):
        return None
    return next((c for c in conds if c.setting == mode), None)


def _setting_verdicts(valid: Valid, by_kernel: Mapping[str, list[Condition]], priority: Sequence[str],
                      common: dict) -> list[Verdict]:
    """Every setting of a kernel against its reference setting, paired round by round on the same boots;
    an ablation (`MODE+no-X`) against its full MODE as well: what taking feature X away costs."""
    out = []
    p = common["percentile"]
    for mine in by_kernel.values():
        ref = _reference(mine)
        for cond in mine:
            against_all = [] if cond is ref else [ref]
            full = ablated_from(cond, mine)
            if full is not None and full is not ref:  # off+no-X meets off once
                against_all.append(full)
            for against in against_all:
                keys = sorted(set(valid.get(cond.label, {})) & set(valid.get(against.label, {})))
                for flow in priority:
                    a = [_one(valid[cond.label][k], flow, p) for k in keys]
                    b = [_one(valid[against.label][k], flow, p) for k in keys]
                    out.append(judge(flow, cond.label, a, against.label, b, unit=ROUND, paired=True, **common))
    return out


def _flow_verdicts(valid: Valid, seen: Sequence[RunRecord], conds: Sequence[Condition], priority: Sequence[str],
                   common: dict) -> list[Verdict]:
    """Each priority-class flow against the condition's first bulk-class flow, in the same runs."""
    out = []
    p = common["percentile"]
    for cond in conds:
        bulk = next(iter(flows_of_class([r for r in seen if r.label == cond.label], "bulk")), None)
        if bulk is None:
            continue  # a mix without a bulk-class probe has no such comparison
        runs = list(valid.get(cond.label, {}).values())
        for flow in priority:
            out.append(judge(flow, cond.label, [_one(r, flow, p) for r in runs], cond.label,
                             [_one(r, bulk, p) for r in runs], unit=ROUND, paired=True, b_flow=bulk, **common))
    return out


def _one(record: RunRecord, flow: str, percentile: float) -> list[Tail]:
    value = value_of(record, flow, percentile)
    return [] if value is None else [value]


def _boots(valid: Mapping[str, Mapping[tuple[int, int], RunRecord]], label: str, flow: str,
           percentile: float) -> list[list[Tail]]:
    """The label's valid runs grouped by boot, in boot order: a unit per boot.

    A run in which none of the flow's probes came back has no value of its
    own; it is counted, not dropped, as a lower bound: the slowest probe the
    same condition brought back in any run (a lost probe ranks above every
    received one).
    """
    runs = valid.get(label, {})
    tails = {key: value_of(r, flow, percentile) for key, r in runs.items()}
    known = [t.value for t in tails.values() if t is not None]
    out: dict[int, list[Tail]] = {}
    for (boot, _round), tail in sorted(tails.items()):
        if tail is None:
            if not known:
                continue
            sent = len(runs[boot, _round].flows.get(flow, {}).get("probes", []))
            tail = Tail(max(known), True, sent, sent)
        out.setdefault(boot, []).append(tail)
    return list(out.values())


@dataclass(frozen=True)
class Rise(JsonData):
    """How much load raises one condition's percentile: loaded rounds against unloaded runs, microseconds.

    ratio is the geometric mean of the loaded values over that of the
    unloaded ones (lower bounds where the loaded tail was censored). The
    unloaded twin may run once per condition and boot, so ci is only given
    (Welch) when both sides have two values.
    """

    label: str
    flow: str
    percentile: float
    loaded_values: tuple[float, ...]
    unloaded_values: tuple[float, ...]
    ratio: float
    ci: Interval | None
    reason: str | None = None  # why there is no ratio

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["ci"] = None if self.ci is None else [plain(self.ci.low), plain(self.ci.high)]
        out["level"] = None if self.ci is None else self.ci.level
        out["loaded_values"], out["unloaded_values"] = list(self.loaded_values), list(self.unloaded_values)
        return out


def rise_over_rounds(records: Sequence[RunRecord], label: str, flow: str, *, percentile: float = 99,
                     level: float = DEFAULT_LEVEL, mix: str | None = None) -> Rise:
    """The loaded/unloaded percentile of one condition and flow (unloaded runs: the mix's -unloaded twin)."""
    mix_name = loaded_mix(records, mix)
    runs = loaded_runs(records, mix_name).get(label, {})
    loaded = [t.value for r in runs.values() if (t := value_of(r, flow, percentile)) is not None]
    twins = [r for r in records if not r.mix["loaded"] and r.label == label
             and r.mix["name"] == f"{mix_name}-unloaded" and run_problem(r) is None]
    unloaded = [t.value for r in twins if (t := value_of(r, flow, percentile)) is not None]
    if not loaded or not unloaded:
        return Rise(label, flow, percentile, tuple(loaded), tuple(unloaded), math.nan, None,
                    reason=f"{label}: {len(loaded)} valid loaded, {len(unloaded)} unloaded run(s) with {flow} values")
    ll, lu = [math.log(v) for v in loaded], [math.log(v) for v in unloaded]
    ratio = math.exp(statistics.fmean(ll) - statistics.fmean(lu))
    ci = None
    if len(ll) >= MIN_UNITS and len(lu) >= MIN_UNITS:
        low, high = welch_interval(ll, lu, level)
        ci = Interval(math.exp(low), math.exp(high), level)
    return Rise(label, flow, percentile, tuple(loaded), tuple(unloaded), ratio, ci)


# --- output -----------------------------------------------------------------------------------


def _ms_list(values: Sequence[float], censored: Sequence[bool]) -> str:
    return " ".join((">" if c else "") + f"{v / 1000:.2f}" for v, c in zip(values, censored, strict=True)) or "-"


def _loss(lost: int, sent: int) -> str:
    return f"{lost}/{sent}" + (f" ({lost / sent:.1%})" if sent and lost else "")


def verdict_rows(verdicts: Sequence[Verdict]) -> list[list[str]]:
    """A table (header first) for rich or markdown: one row per verdict, per-unit values in ms."""
    p = f"p{verdicts[0].percentile:g}" if verdicts else "p99"
    level = f"{verdicts[0].ci.level * 100:g}% CI" if verdicts else "95% CI"
    rows = [["flow", "a", "b", "unit", f"a {p} ms by unit", f"b {p} ms by unit", "ratio a/b", level, "verdict",
             "units a/b", "lost a", "lost b"]]
    for v in verdicts:
        finite = math.isfinite(v.ci.low) and math.isfinite(v.ci.high)
        rows.append([v.flow if v.b_flow is None else f"{v.flow} vs {v.b_flow}", v.a, v.b, v.unit,
                     _ms_list(v.a_values, v.a_censored), _ms_list(v.b_values, v.b_censored),
                     f"{v.ratio:.3f}" if math.isfinite(v.ratio) else "-", v.ci.text(3) if finite else "-",
                     v.verdict + (f" ({v.reason})" if v.reason else ""), f"{v.units[0]}/{v.units[1]}",
                     _loss(*v.loss[0]), _loss(*v.loss[1])])
    return rows


def write_verdict_json(path: Path, *, host: Mapping, verdicts: Sequence[Verdict], rises: Sequence[Rise],
                       calibration: Mapping | None, excluded: Sequence[Mapping], design: Mapping,
                       tries: Sequence[Mapping] = ()) -> Path:
    """verdict.json (SCHEMA), written whole or not at all.

    design: baseline, kernels, boots and rounds per kernel, practical
    minimum. excluded lists every run left out and why; tries every try of
    every loaded run (valid, invalid, failed), with a count per condition.
    """
    counts: dict[str, dict[str, int]] = {}
    for t in tries:
        counts.setdefault(t["label"], {"valid": 0, "invalid": 0, "failed": 0})[t["outcome"]] += 1
    doc = {"schema": SCHEMA, "host": dict(host), "design": dict(design),
           "verdicts": [v.to_dict() for v in verdicts], "rises": [r.to_dict() for r in rises],
           "calibration": None if calibration is None else dict(calibration),
           "excluded": [dict(e) for e in excluded], "tries": [dict(t) for t in tries], "tries_by_condition": counts}
    path = Path(path)
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path
