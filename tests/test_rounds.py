"""testbed.analysis.rounds: which verdicts an experiment's records give, over which unit, and verdict.json."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest

from testbed.analysis import regime_report
from testbed.analysis.counted import excluded_runs
from testbed.analysis.judge import BOOT, INCONCLUSIVE, ROUND, Verdict
from testbed.analysis.latency import FASTER, SLOWER
from testbed.analysis.rounds import SCHEMA, rise_over_rounds, verdict_rows, verdicts_from_records, write_verdict_json
from testbed.analysis.run_record import RunRecord
from testbed.core.errors import VerdictError


def probes(p99_us: float | None, n: int = 100, lost: int = 0) -> list[list]:
    """n probe rows whose intact RTTs are all p99_us (so every percentile is p99_us), then `lost` lost ones."""
    rows = [[i, i * 1000, None if p99_us is None else int(p99_us * 1000), True, True] for i in range(n)]
    return rows + [[n + i, (n + i) * 1000, None, True, True] for i in range(lost)]


def run(label: str, rnd: int | None, *, boot: int | None = None, kernel: str | None = None,
        setting: str | None = None, loaded: bool = True, valid: bool | None = True, why: str = "",
        priority: float | None = 1000.0, bulk: float | None = 5000.0, lost: int = 0, mix: str = "overlay-flood",
        names: tuple[str, str] = ("priority", "bulk")) -> RunRecord:
    """A run record as the experiment writes it, with only the fields verdicts read."""
    def flow(cls: str, p99: float | None, lost: int = 0) -> dict:
        rows = probes(p99, lost=lost)
        summary = None if p99 is None else {"p50": p99, "p99": p99}
        return {"class": cls, "summary": summary, "probes": rows,
                "integrity": {"sent": len(rows), "lost": lost + (100 if p99 is None else 0)}}
    r = {"label": label, "mix": {"name": mix if loaded else f"{mix}-unloaded", "loaded": loaded},
         "flows": {names[0]: flow("priority", priority, lost), names[1]: flow("bulk", bulk)},
         "kernel_label": kernel, "setting": setting, "boot": boot}
    if rnd is not None:
        r["round"] = rnd
    if valid is not None:
        r["regime"] = {"valid": valid, "why": why}
    return RunRecord.from_dict(r)


# p99 in µs per (kernel condition, boot, round): prism's settings on prism's boots, vanilla on its own
VANILLA = {1: (1000.0, 1100.0), 2: (950.0, 1050.0), 3: (1200.0, 1000.0)}
OFF = {1: (900.0, 1000.0), 2: (1100.0, 950.0), 3: (1000.0, 1050.0)}
SYNC = {1: (200.0, 210.0), 2: (190.0, 205.0), 3: (220.0, 200.0)}


def experiment() -> list[RunRecord]:
    """Three boots a kernel, two rounds a boot; prism's conditions first on purpose."""
    recs = []
    for boot in (1, 2, 3):
        for rnd in (1, 2):
            recs.append(run("prism/sync", rnd, boot=boot, kernel="prism", setting="sync",
                            priority=SYNC[boot][rnd - 1], bulk=SYNC[boot][rnd - 1] * 20))
            recs.append(run("prism/off", rnd, boot=boot, kernel="prism", setting="off",
                            priority=OFF[boot][rnd - 1], bulk=OFF[boot][rnd - 1]))
            recs.append(run("vanilla", rnd, boot=boot, kernel="vanilla", priority=VANILLA[boot][rnd - 1]))
    recs.append(run("vanilla", 1, boot=0, kernel="vanilla", loaded=False, valid=None, priority=100.0))
    return recs


def geo(xs) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def test_kernels_are_judged_over_boots_settings_and_flows_over_rounds():
    vs = verdicts_from_records(experiment())
    assert [(v.flow, v.a, v.b, v.b_flow, v.unit, v.paired) for v in vs] == [
        ("priority", "prism/sync", "vanilla", None, BOOT, False),
        ("priority", "prism/off", "vanilla", None, BOOT, False),
        ("priority", "prism/sync", "prism/off", None, ROUND, True),
        ("priority", "prism/sync", "prism/sync", "bulk", ROUND, True),
        ("priority", "prism/off", "prism/off", "bulk", ROUND, True),
        ("priority", "vanilla", "vanilla", "bulk", ROUND, True),
    ]
    sync_v, off_v, sync_off = vs[:3]
    assert sync_v.units == (3, 3) and sync_v.runs == (6, 6)
    assert sync_v.a_values == pytest.approx([geo(SYNC[b]) for b in (1, 2, 3)])
    assert sync_v.b_values == pytest.approx([geo(VANILLA[b]) for b in (1, 2, 3)])
    assert sync_v.verdict == FASTER and off_v.verdict == INCONCLUSIVE
    assert sync_off.units == (6, 6) and sync_off.a_values == (200.0, 210.0, 190.0, 205.0, 220.0, 200.0)
    assert sync_off.verdict == FASTER


def test_an_ablation_is_judged_against_its_full_mode_as_well_as_against_off():
    """`pseudo-sync+no-local` against `pseudo-sync` on the same rounds: what taking the feature away costs."""
    full = {1: (200.0, 210.0), 2: (190.0, 205.0), 3: (220.0, 200.0)}
    recs = []
    for boot in (1, 2, 3):
        for rnd in (1, 2):
            p = full[boot][rnd - 1]
            for label, setting, p99 in (("prism/off", "off", 1000.0), ("prism/pseudo-sync", "pseudo-sync", p),
                                        ("prism/pseudo-sync+no-local", "pseudo-sync+no-local", p * 2),
                                        ("prism/sync+no-cell", "sync+no-cell", p)):
                recs.append(run(label, rnd, boot=boot, kernel="prism", setting=setting, priority=p99))
    vs = [(v.a, v.b, v.verdict) for v in verdicts_from_records(recs) if v.unit == ROUND and v.b_flow is None]
    assert vs == [("prism/pseudo-sync", "prism/off", FASTER),
                  ("prism/pseudo-sync+no-local", "prism/off", FASTER),
                  ("prism/pseudo-sync+no-local", "prism/pseudo-sync", SLOWER),
                  ("prism/sync+no-cell", "prism/off", FASTER)]  # no sync measured: no ablation verdict
    recs = [run("prism/off", 1, boot=b, kernel="prism", setting="off", priority=1000.0) for b in (1, 2)]
    recs += [run("prism/off+no-local", 1, boot=b, kernel="prism", setting="off+no-local", priority=1000.0)
             for b in (1, 2)]
    assert [(v.a, v.b) for v in verdicts_from_records(recs) if v.unit == ROUND and v.b_flow is None] == [
        ("prism/off+no-local", "prism/off")]  # its full mode is the reference: judged once


def test_the_baseline_can_be_any_kernel():
    vs = verdicts_from_records(experiment(), baseline="prism")
    kernel_vs = [(v.a, v.b) for v in vs if v.unit == BOOT]
    assert kernel_vs == [("vanilla", "prism/off")]  # a kernel without settings meets the reference setting
    with pytest.raises(VerdictError, match="baseline 'mine' has no loaded runs"):
        verdicts_from_records(experiment(), baseline="mine")


def test_the_same_kernel_twice_is_judged_like_two():
    recs = [run("vanilla", 1, boot=b, kernel="vanilla", priority=p) for b, p in ((1, 1000.0), (2, 1100.0))]
    recs += [run("vanilla#2", 1, boot=b, kernel="vanilla#2", priority=p) for b, p in ((1, 1050.0), (2, 1000.0))]
    v = verdicts_from_records(recs, baseline="vanilla")[0]
    assert (v.a, v.b, v.unit, v.units) == ("vanilla#2", "vanilla", BOOT, (2, 2)) and v.verdict == INCONCLUSIVE


def test_a_run_whose_flow_lost_everything_counts_as_a_lower_bound_not_a_gap():
    recs = experiment()
    recs[2] = dataclasses.replace(recs[2], flows={**recs[2].flows, "priority": run("x", 1, priority=None).flows["priority"]})
    v = verdicts_from_records(recs)[0]
    assert v.b == "vanilla" and v.units == (3, 3) and v.b_censored == (True, False, False)
    assert v.verdict == FASTER  # a lower bound on the baseline still allows faster
    assert v.loss[1] == (100, 600)
    assert excluded_runs(recs)[0]["why"].startswith("flow 'priority': no probe came back intact")


def test_lost_probes_are_in_the_tail_and_in_the_verdict():
    recs = experiment()
    recs[2] = run("vanilla", 1, boot=1, kernel="vanilla", priority=1000.0, lost=2)  # 2 of 102: p99 censored
    v = verdicts_from_records(recs)[0]
    assert v.b_censored == (True, False, False) and v.loss[1] == (2, 602)


def test_tables_and_verdicts_pick_flows_by_class_whatever_the_mix_calls_them():
    names = ("rpc-latency", "backup-stream")
    recs = [run(label, rnd, boot=b, kernel=label, priority=p * (1 + rnd / 100), names=names)
            for label, p in (("vanilla", 1000.0), ("mine", 300.0)) for b in (1, 2) for rnd in (1, 2)]
    vs = verdicts_from_records(recs)
    assert {(v.flow, v.b_flow) for v in vs} == {("rpc-latency", None), ("rpc-latency", "backup-stream")}
    rows = regime_report.round_rows(recs)
    assert rows[0][-1] == "backup-stream p99 median ms"
    assert [r[:2] for r in rows[1:]] == [["vanilla", "rpc-latency"], ["mine", "rpc-latency"]]
    assert rows[1][3].startswith("1.1:1.0") and rows[1][-1] == "5.0"
    summaries = regime_report.breakdown_summaries(recs)
    assert set(summaries) == {"vanilla", "mine"}


def test_excluded_runs_name_the_boot():
    recs = experiment() + [run("vanilla", 3, boot=1, kernel="vanilla", valid=False, why="no standing queue")]
    assert excluded_runs(recs) == [{"label": "vanilla", "boot": 1, "round": 3, "attempt": None,
                                    "mix": "overlay-flood", "loaded": True, "flow": None, "why": "no standing queue"}]


def test_records_that_cannot_be_judged_raise():
    with pytest.raises(VerdictError, match="boot 1 round 1 is recorded twice"):
        verdicts_from_records([run("vanilla", 1), run("vanilla", 1)])
    assert len(verdicts_from_records([run("vanilla", 1, boot=1), run("vanilla", 1, boot=2)])) == 1
    with pytest.raises(VerdictError, match="2 mixes"):
        verdicts_from_records([run("vanilla", 1), run("vanilla", 1, mix="other")])
    with pytest.raises(VerdictError, match="round 0"):
        verdicts_from_records([run("vanilla", 0)])
    with pytest.raises(VerdictError, match="regime"):
        verdicts_from_records([dataclasses.replace(run("vanilla", 1), regime="valid")])


def test_a_run_whose_prober_dropped_replies_does_not_count():
    """Its losses would be the host's, counted as the guest's; loaded or not."""
    dropped = dataclasses.replace(run("vanilla", 2, priority=5.0), prober={"foreign": 0, "receive_drops": 17})
    recs = [run("vanilla", 1), dropped, run("vanilla", 3)]
    assert verdicts_from_records(recs)[0].units == (2, 2)
    assert [(e["round"], e["why"]) for e in excluded_runs(recs)] == [
        (2, "the host prober's receive socket dropped 17 frames (host too busy to read them)")]


def test_rise_over_rounds():
    rise = rise_over_rounds(experiment(), "vanilla", "priority")
    assert rise.unloaded_values == (100.0,) and rise.ci is None
    assert rise.ratio == pytest.approx(geo([v for b in VANILLA.values() for v in b]) / 100.0)
    assert "0 unloaded" in rise_over_rounds(experiment(), "prism/off", "priority").reason


def test_verdict_rows_show_unit_censoring_and_loss():
    recs = experiment()
    recs[2] = run("vanilla", 1, boot=1, kernel="vanilla", priority=1000.0, lost=2)
    rows = verdict_rows(verdicts_from_records(recs))
    assert rows[0][3:5] == ["unit", "a p99 ms by unit"] and rows[0][-2:] == ["lost a", "lost b"]
    assert rows[1][3] == "boot" and rows[1][5].startswith(">1.05 ") and rows[1][-1] == "2/602 (0.3%)"


def test_verdict_json_round_trips(tmp_path):
    recs = experiment()
    vs = verdicts_from_records(recs)
    tries = [{"label": "vanilla", "outcome": o} for o in ("valid", "invalid", "failed", "valid")]
    path = write_verdict_json(tmp_path / "out" / "verdict.json", host={"cpus": 2}, verdicts=vs,
                              rises=[rise_over_rounds(recs, "vanilla", "priority")], calibration=None,
                              excluded=excluded_runs(recs), design={"baseline": "vanilla", "boots_per_kernel": 3},
                              tries=tries)
    assert [p.name for p in path.parent.iterdir()] == ["verdict.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA == "prism-testbed/verdict/2"
    assert doc["design"]["baseline"] == "vanilla"
    assert doc["tries_by_condition"] == {"vanilla": {"valid": 2, "invalid": 1, "failed": 1}}
    first = doc["verdicts"][0]
    assert (first["a"], first["b"], first["unit"], first["units"], first["runs"]) == (
        "prism/sync", "vanilla", "boot", [3, 3], [6, 6])
    assert first["loss"] == {"a": {"lost": 0, "sent": 600}, "b": {"lost": 0, "sent": 600}}
    back = [Verdict.from_dict(d) for d in doc["verdicts"]]
    assert back == vs and [b.to_dict() for b in back] == doc["verdicts"]
    short = [v for v in vs if v.verdict == INCONCLUSIVE]
    assert all(v.reason for v in short)
