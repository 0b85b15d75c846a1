"""The regime a loaded run must prove: a queue that stood on the target CPU, headroom before it."""

from __future__ import annotations

from testbed.analysis.regime import HEADROOM_DROP_SHARE, STANDING_SHARE, Regime, WindowBacklog, judge, level_for
from testbed.analysis.run_record import RunRecord
from testbed.traffic.stagewatch import VmStages


def stages(occupancy: float, *, cpu: int = 1, tap_drop: int = 0, gro_drop: int = 0, nic_drop: int = 0,
           other: float = 0.0) -> VmStages:
    samples = 400
    window = [WindowBacklog(0, samples, 50, 2.0, int(other * samples), 0, 0, 1000, 2_000_000),
              WindowBacklog(cpu, samples, 1000, 400.0, int(occupancy * samples), 300, 5, 30000, 2_000_000)]
    return VmStages("server", tap_to_guest=100_000, tap_dropped=tap_drop, nic_rx=100_000, nic_dropped=nic_drop,
                    gro_cells_dropped={"vx42": gro_drop}, window=window, level=100)


def test_level_is_a_share_of_netdev_max_backlog():
    assert level_for(1000) == 100 and level_for(5000) == 500 and level_for(3) == 1


def test_a_queue_that_stood_with_headroom_is_valid():
    g = judge(stages(0.9), (1,))
    assert g.valid and g.standing and g.headroom and g.required
    assert g.target_cpus == (1,) and g.occupancy == 0.9 and g.backlog_drops == 300
    assert g.why.startswith("server: standing: cpu1 backlog >= 100 in 90% of 400 samples")


def test_a_burst_is_not_a_standing_queue():
    g = judge(stages(STANDING_SHARE - 0.01), (1,))
    assert not g.valid and not g.standing and g.headroom
    assert "no standing queue" in g.why


def test_occupancy_is_judged_on_the_target_cpu_not_the_busiest():
    g = judge(stages(0.1, other=0.95), (1,))
    assert not g.valid and g.target_cpus == (1,)


def test_without_a_pinned_target_the_busiest_cpu_is_judged_and_said_so():
    g = judge(stages(0.9), ())
    assert g.valid and g.target_cpus == (1,) and "the mix pins no RPS CPU" in g.why


def test_drops_before_the_target_make_the_run_invalid_even_with_a_standing_queue():
    for kwargs, stage in (({"tap_drop": 2000}, "host tap"), ({"gro_drop": 5000}, "gro_cells"),
                          ({"nic_drop": 3000}, "nic")):
        g = judge(stages(0.95, **kwargs), (1,))
        assert not g.valid and g.standing and not g.headroom, kwargs
        assert f"{stage} dropped" in g.why


def test_drops_within_the_headroom_share_are_tolerated():
    g = judge(stages(0.95, tap_drop=int(HEADROOM_DROP_SHARE * 100_000 * 0.5)), (1,))
    assert g.valid


def test_an_empty_window_is_invalid():
    g = judge(VmStages("server"), (1,))
    assert not g.valid and "window empty" in g.why


def test_regime_to_dict_carries_the_thresholds():
    d = judge(stages(0.9), (1,)).to_dict()
    assert d["valid"] and d["thresholds"]["standing_share"] == STANDING_SHARE and d["target_cpus"] == [1]
    assert Regime.not_required("no flood").to_dict()["required"] is False


def _record(label: str, loaded: bool, p99_us: float, valid: bool | None, round_no: int = 1) -> RunRecord:
    regime = None if valid is None else {"required": True, "valid": valid, "standing": valid, "why": "x",
                                         "target_cpus": [1], "occupancy": 0.9 if valid else 0.1,
                                         "backlog_mean": 500, "backlog_drops": 10}
    def rows(rtt_us: float, lost: int) -> list[list]:
        return [[i, 0, None if i < lost else int(rtt_us * 1000), True, True] for i in range(10)]
    flow = {"class": "priority", "integrity": {"lost": 1, "sent": 10}, "summary": {"p99": p99_us},
            "probes": rows(p99_us, 0)}
    bulk = {"class": "bulk", "integrity": {"lost": 0, "sent": 10}, "summary": {"p99": 4 * p99_us},
            "probes": rows(4 * p99_us, 0)}
    return RunRecord(label=label, round=round_no, mix={"name": "m" if loaded else "m-unloaded", "loaded": loaded},
                     regime=regime, floods=[{"achieved_pps": 1000.0}], flows={"priority": flow, "bulk": bulk})


def test_the_report_shows_each_runs_regime_and_counts_only_valid_rounds():
    from testbed.analysis import regime_report
    records = [_record("vanilla", False, 2000, None), _record("vanilla", True, 60000, True, 1),
               _record("vanilla", True, 90000, False, 2), _record("vanilla", True, 70000, True, 2)]
    regime = regime_report.regime_rows(records)
    assert [row[-1] for row in regime[1:]] == ["valid", "INVALID", "valid"]
    (row,) = regime_report.round_rows(records)[1:]
    assert row[:3] == ["vanilla", "priority", "2.0"] and row[3] == "1.1:60.0 1.2:70.0" and row[5] == "2/3"
    assert row[6] == "2/20" and row[7] == "260.0"  # loss and bulk over the valid rounds only


def test_the_calibration_table_says_which_steps_held():
    from testbed.analysis import regime_report
    held = Regime(required=True, valid=True, why="ok", standing=True).to_dict()
    burst = Regime(required=True, valid=False, why="no", standing=True, headroom=False).to_dict()
    rows = regime_report.calibration_rows({"steps": [
        {"target_pps": 1000, "achieved_pps": 1000, "sender_kept_up": True, "regime": held},
        {"target_pps": 2000, "achieved_pps": 1500, "sender_kept_up": False, "regime": burst}]})
    assert [r[-1] for r in rows[1:]] == ["held", "standing, no headroom"] and rows[2][2] == "no"


def test_round_rows_say_how_many_of_the_lost_probes_the_host_dropped():
    from testbed.analysis import regime_report
    record = _record("prism-sync", True, 9000, True)
    record.flows["priority"]["lost_at_host"] = 1
    assert regime_report.round_rows([record])[1][6] == "1/10 (1 on the host)"
