"""Report tables for the evidence behind a verdict: the calibration ramp, each loaded run's regime,
and each condition over its rounds. Plain rows (header first) from JSON records, so the rich
and markdown reports and `prism-testbed report DIR` show the same thing.
"""

from __future__ import annotations

import statistics

from .counted import flows_of_class, value_of
from .judge import PRACTICAL_MINIMUM
from .run_record import RunRecord


def calibration_rows(calibration: dict) -> list[list[str]]:
    """One row per ramp step: offered, sent, what the target CPU's backlog and the stages before it did."""
    out = [["offered pps", "sent pps", "sender kept up", "target cpu", "occupancy", "backlog mean",
            "backlog drops", "tap drop", "nic drop", "gro_cells drop", "regime"]]
    for step in calibration.get("steps", []):
        g = step["regime"]
        out.append([str(step["target_pps"]), str(step["achieved_pps"]), "yes" if step["sender_kept_up"] else "no",
                    ",".join(map(str, g.get("target_cpus", []))) or "-", f"{g.get('occupancy', 0):.0%}",
                    f"{g.get('backlog_mean', 0):.0f}", str(g.get("backlog_drops", 0)),
                    f"{g.get('tap_drop_share', 0):.2%}", f"{g.get('nic_drop_share', 0):.2%}",
                    f"{g.get('gro_cells_drop_share', 0):.2%}",
                    "held" if g.get("valid") else ("standing, no headroom" if g.get("standing") else "not standing")])
    return out


def calibrations_of(doc: dict) -> list[dict]:
    """Each kernel's calibration in an experiment's calibration document (or the one a record carries)."""
    return list(doc.get("kernels", [])) if "kernels" in doc else [doc]


def calibration_title(calibration: dict) -> str:
    host = calibration.get("host", {})
    where = ", ".join(f"{k} {v}" for k, v in host.items())
    rate = calibration.get("rate")
    chosen = f"chosen {rate} pps" if rate is not None else "not reached"
    ceiling = calibration.get("sender_ceiling_pps")
    sender = f"; sender ceiling {ceiling:.0f} pps" if ceiling else "; the sender kept every step's schedule"
    kernel = f" on {calibration['kernel']}" if calibration.get("kernel") else ""
    return (f"calibration of {calibration.get('mix')}{kernel} ({where}): {chosen}{sender} — "
            f"{calibration.get('why', '')}")


def regime_rows(records: list[RunRecord]) -> list[list[str]]:
    """One row per loaded run: the regime it proved (or not), with its figures."""
    out = [["condition", "round", "try", "flood pps", "target cpu", "occupancy", "backlog mean", "backlog drops",
            "tap drop", "nic drop", "gro_cells drop", "regime"]]
    for r in records:
        g = r.regime
        if not r.mix["loaded"] or not g:
            continue
        offered = sum(f["achieved_pps"] for f in r.floods)
        if not g.get("required", True):
            out.append([r.label, str(r.round), str(r.attempt or 1), f"{offered:.0f}", "-", "-", "-",
                        "-", "-", "-", "-", "not required"])
            continue
        out.append([r.label, str(r.round), str(r.attempt or 1), f"{offered:.0f}",
                    ",".join(map(str, g.get("target_cpus", []))) or "-", f"{g.get('occupancy', 0):.0%}",
                    f"{g.get('backlog_mean', 0):.0f}", str(g.get("backlog_drops", 0)),
                    f"{g.get('tap_drop_share', 0):.2%}", f"{g.get('nic_drop_share', 0):.2%}",
                    f"{g.get('gro_cells_drop_share', 0):.2%}", "valid" if g.get("valid") else "INVALID"])
    return out


def _p99_ms(record: RunRecord, flow: str) -> float | None:
    summary = record.flows.get(flow, {}).get("summary")
    return None if not summary else summary["p99"] / 1000


def first_of_class(records: list[RunRecord], cls: str) -> str | None:
    """The first flow of a class ("priority", "bulk") the records name, whatever the mix calls it."""
    return next(iter(flows_of_class(records, cls)), None)


def round_rows(records: list[RunRecord]) -> list[list[str]]:
    """Per condition and priority-class flow: unloaded p99, loaded p99 of every valid round (lost probes
    counted: '>' marks a lower bound), their median, loss, the first bulk-class flow's p99."""
    bulk = first_of_class(records, "bulk")
    out = [["condition", "flow", "unloaded p99 ms", "loaded p99 ms per valid round (boot.round)", "median",
            "valid/runs", "lost (valid runs)", f"{bulk or 'bulk'} p99 median ms"]]
    for flow in flows_of_class(records, "priority"):
        for label in dict.fromkeys(r.label for r in records if flow in r.flows):
            mine = [r for r in records if r.label == label and flow in r.flows]
            unloaded = [t for r in mine if not r.mix["loaded"] if (t := value_of(r, flow, 99)) is not None]
            loaded = [r for r in mine if r.mix["loaded"]]
            valid = [r for r in loaded if (r.regime or {}).get("valid")]
            tails = [(r, t) for r in valid if (t := value_of(r, flow, 99)) is not None]
            bulk99 = [t.value / 1000 for r in valid if bulk and bulk in r.flows
                      if (t := value_of(r, bulk, 99)) is not None]
            lost = sum(r.flows[flow]["integrity"]["lost"] for r in valid)
            sent = sum(r.flows[flow]["integrity"]["sent"] for r in valid)
            at_host = sum(r.flows[flow].get("lost_at_host", 0) for r in valid)
            median = statistics.median(t.value for _, t in tails) / 1000 if tails else None
            out.append([label, flow, " ".join(t.text() for t in unloaded) or "-",
                        " ".join(f"{r.boot_no}.{r.round}:{t.text()}" for r, t in tails) or "-",
                        "-" if median is None else f"{median:.1f}", f"{len(valid)}/{len(loaded)}",
                        f"{lost}/{sent}" + (f" ({at_host} on the host)" if at_host else ""),
                        f"{statistics.median(bulk99):.1f}" if bulk99 else "-"])
    return out


def breakdown_summaries(records: list[RunRecord]) -> dict[str, dict[str, dict | None]]:
    """Per condition: each probe flow's breakdown unloaded, and in the valid round with the median p99 of
    the first priority-class flow.

    One representative round rather than an average: a breakdown's parts
    add up within one run, not across runs.
    """
    out: dict[str, dict[str, dict | None]] = {}
    priority = first_of_class(records, "priority")
    for label in dict.fromkeys(r.label for r in records):
        mine = [r for r in records if r.label == label]
        unloaded = next((r for r in mine if not r.mix["loaded"]), None)
        valid = sorted((r for r in mine if r.mix["loaded"] and (r.regime or {}).get("valid")
                        and priority and _p99_ms(r, priority) is not None), key=lambda r: _p99_ms(r, priority))
        median = valid[(len(valid) - 1) // 2] if valid else None
        rows: dict[str, dict | None] = {}
        for what, record in (("unloaded", unloaded), (f"loaded b{median.boot_no}r{median.round}" if median else "",
                                                      median)):
            if record is None:
                continue
            for flow, data in record.flows.items():
                rows[f"{flow} {what}"] = data.get("breakdown")
        out[label] = rows
    return out


def has_rounds(records: list[RunRecord]) -> bool:
    """Records of an experiment over rounds (or carrying a regime) get these tables."""
    return any(r.regime for r in records)


def sections(records: list[RunRecord], over_rounds: bool = True,
             baseline: str | None = None) -> list[tuple[str, list[list[str]]]]:
    """The evidence tables for records that carry a regime: (title, rows with header first).

    over_rounds=False gives only the calibration and each run's regime: for
    records that are not an experiment's rounds (a pytest session's).
    """
    from . import rounds

    if not has_rounds(records):
        return []
    out = []
    calibration = next((r.calibration for r in records if r.calibration), None)
    for one in calibrations_of(calibration or {}) if calibration else []:
        out.append((calibration_title(one), calibration_rows(one)))
    if calibration and "kernels" in calibration:
        out[-1] = (out[-1][0] + f". Every kernel ran at {calibration.get('rate')} pps: {calibration.get('why')}",
                   out[-1][1])
    out.append(("loaded runs: the regime each proved (valid runs count; invalid ones are rerun)", regime_rows(records)))
    if not over_rounds:
        return out
    out.append(("priority-class flows by condition over rounds", round_rows(records)))
    from .breakdown import breakdown_rows

    summaries = breakdown_summaries(records)
    if any(v for flows in summaries.values() for v in flows.values()):
        out.append(("where the round trip goes (µs): unloaded, and the valid round with the median priority p99",
                    breakdown_rows(summaries)))
    verdicts = rounds.verdicts_from_records(records, baseline=baseline)
    if verdicts:
        out.append((f"verdicts (p99 over the probes sent, a lost probe slower than any; ratio of geometric "
                     f"means, 95% t interval over the unit; 'faster' needs the whole interval below "
                     f"{1 - PRACTICAL_MINIMUM:.2f}, 'slower' above {1 / (1 - PRACTICAL_MINIMUM):.2f})",
                    rounds.verdict_rows(verdicts)))
    return out


def write_verdicts(records: list[RunRecord], path, *, host: dict, design: dict, calibration: dict | None,
                   tries: list[dict] = ()):
    """verdict.json beside the records: every verdict, the rises, what was left out and why, every try."""
    from . import counted, rounds

    labels = list(dict.fromkeys(r.label for r in records))
    flows = flows_of_class(records, "priority")
    rises = [rounds.rise_over_rounds(records, label, flow) for label in labels for flow in flows]
    verdicts = rounds.verdicts_from_records(records, baseline=design.get("baseline"))
    return rounds.write_verdict_json(path, host=host, design=design, verdicts=verdicts, rises=rises,
                                     calibration=calibration, excluded=counted.excluded_runs(records), tries=tries)
