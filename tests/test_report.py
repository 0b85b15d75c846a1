"""Run records, tables, comparisons and the CDF plot, from synthetic runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from testbed.analysis import report
from testbed.analysis.records import ProbeRow
from testbed.analysis.run_record import RunRecord
from testbed.analysis.verdict import ProbeRecord
from testbed.build.kernel import Kernel
from testbed.core.errors import ConfigError
from testbed.net import topology as topology_mod
from testbed.traffic import mix as mix_mod
from testbed.traffic.prober import ProbeRun
from testbed.traffic.run import MixRun
from testbed.vm.accel import AccelChoice

MIX = mix_mod.load("overlay-flood")
TOPOLOGY = topology_mod.load("two-vm")


def fake_run(mix: mix_mod.Mix, scale_us: float, seed: int, lose: int = 0) -> MixRun:
    rng = random.Random(seed)
    records = []
    for p in mix.probes:
        for seq in range(300):
            sent = 1_000_000_000 + seq * 5_000_000
            rtt = None if seq < lose else int(rng.expovariate(1 / scale_us) * 1000) + 100_000
            records.append(ProbeRecord(p.name, seq, sent, None if rtt is None else sent + rtt, True, True))
    return MixRun(mix, ProbeRun(records, {p.name: [1000] * 300 for p in mix.probes}), seconds=9.5, host_load=(1.0, 1.5))


def record(variant: str, mix: mix_mod.Mix, scale_us: float, seed: int, lose: int = 0) -> RunRecord:
    kernel = Kernel(Path(f"/k/{variant}"), f"6.1.192-{variant}", variant, {"config_sha256": "x"})
    return report.run_record(fake_run(mix, scale_us, seed, lose), kernel=kernel,
                             accel=AccelChoice("tcg", False, "test"), topology=TOPOLOGY, case="cases/x.py::t")


@pytest.fixture
def records() -> list[RunRecord]:
    return [record("vanilla", MIX.without_bulk(), 500, 1), record("vanilla", MIX, 50_000, 2, lose=3),
            record("prism", MIX.without_bulk(), 500, 3), record("prism", MIX, 700, 4)]


def test_a_record_keeps_every_probe_and_the_run_context(records):
    r = records[1]
    assert r.schema == report.SCHEMA and r.kernel["release"] == "6.1.192-vanilla"
    assert r.accel == {"accel": "tcg", "vhost": False, "reason": "test"}
    assert r.topology["name"] == "two-vm" and r.mix["loaded"] is True
    flow = r.flows["priority"]
    rows = [ProbeRow.from_list(p) for p in flow["probes"]]
    assert len(rows) == 300 and rows[0].rtt_ns is None and flow["integrity"]["lost"] == 3
    assert sum(r.intact_rtt_ns is not None for r in rows) == 297
    assert flow["summary"]["count"] == 297 and flow["class"] == "priority"
    data = json.loads(json.dumps(r.to_dict()))  # plain data all the way down
    assert next(iter(data)) == "schema" and "path" not in data
    assert RunRecord.from_dict(data).to_dict() == data


def test_rows_and_comparisons(records):
    rows = report.rows(records)
    n = len(MIX.probes)
    assert len(rows) == 4 * n and rows[n][:4] == ["vanilla", "overlay-flood", "priority", "priority"]
    assert rows[n][10].startswith("3/0/")  # lost/duplicated/...
    comp = {(r[2], r[0], r[1], r[3]): r for r in report.comparisons(records)}
    # within runs only: a kernel is never judged against another from one run's probes
    assert not any(what.endswith("vs vanilla") for _, _, _, what in comp)
    assert comp[("vanilla", "overlay-flood", "priority", "loaded vs unloaded")][6] == "above"
    assert comp[("prism", "overlay-flood", "priority", "priority vs bulk (same run)")][6] in ("below", "overlapping")


def test_markdown_and_plot(records, tmp_path):
    md = report.markdown(records)
    assert md.startswith("### PRISM testbed: priority flow by condition") and "| prism | overlay-flood | priority |" in md
    png = report.cdf_plot(records, tmp_path / "cdf.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_records_round_trip_through_a_directory(records, tmp_path):
    for i, r in enumerate(records):
        report.write_record(r, tmp_path / "a" / str(i % 2), f"run {i}")
    (tmp_path / "a" / "session.json").write_text("{}")  # other JSON beside them is skipped
    loaded = report.load_records([tmp_path / "a"])
    assert len(loaded) == 4 and not list(tmp_path.rglob("*.tmp"))
    as_json = [json.loads(json.dumps(r.to_dict())) for r in (records[0], records[2], records[1], records[3])]
    assert [r.to_dict() for r in sorted(loaded, key=lambda x: x.path)] == as_json
    assert all(r.path and r.path.endswith(".json") for r in loaded)
    assert report.samples_of(loaded[0], "priority").count > 0


def test_report_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        report.load_records([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="no run records"):
        report.load_records([tmp_path])
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="bad.json is not a JSON run record"):
        report.load_records([bad])


def _directory_of_records(records, tmp_path) -> Path:
    for i, r in enumerate(records):
        report.write_record(r, tmp_path / "runs", f"run {i}")
    return tmp_path / "runs"


def test_a_truncated_record_is_an_error_naming_it(records, tmp_path):
    runs = _directory_of_records(records, tmp_path)
    victim = sorted(runs.glob("*.json"))[1]
    victim.write_text(victim.read_text()[:len(victim.read_text()) // 2])
    with pytest.raises(ConfigError) as info:
        report.load_records([runs])
    assert str(victim) in str(info.value) and "not a JSON run record" in str(info.value)
    skipped: list[str] = []
    loaded = report.load_records([runs], skipped=skipped)
    assert len(loaded) == len(records) - 1 and len(skipped) == 1 and str(victim) in skipped[0]


@pytest.mark.parametrize(("damage", "says"), [
    (lambda r: r.pop("flows"), "no flows"),
    (lambda r: r.update(flows=[]), "flows is a list, not a dict"),
    (lambda r: r["mix"].pop("loaded"), "no mix.loaded"),
    (lambda r: next(iter(r["flows"].values())).update(probes=None), "probes is a null, not a list"),
    (lambda r: r.update(floods={}), "floods is a dict, not a list"),
])
def test_a_record_missing_what_the_tables_read_is_an_error(records, tmp_path, damage, says):
    data = json.loads(json.dumps(records[0].to_dict()))
    damage(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=says) as info:
        report.load_records([path])
    assert "\n" not in str(info.value)


def test_report_cli_skip_bad_counts_what_it_left_out(records, tmp_path, capsys):
    from testbed import cli
    runs = _directory_of_records(records, tmp_path)
    sorted(runs.glob("*.json"))[0].write_text('{\n "schema": "prism-testbed/run/1",\n "case')
    assert cli.main(["report", str(runs)]) == 2
    assert "--skip-bad" in capsys.readouterr().err
    assert cli.main(["report", "--skip-bad", "--markdown", str(runs)]) == 0
    out, err = capsys.readouterr()
    assert "1 damaged record left out" in err and out.startswith("### PRISM testbed")


@pytest.mark.parametrize(("plot", "says"), [("x.txt", "path ending in .png"), ("/nonexistent/dir/x.png", "does not exist")])
def test_report_plot_path_is_checked_before_anything_is_written(records, tmp_path, capsys, plot, says):
    from testbed import cli
    runs = _directory_of_records(records, tmp_path)
    assert cli.main(["report", "--plot", plot, str(runs)]) == 2
    assert says in capsys.readouterr().err and not Path("/nonexistent").exists()


def test_a_damaged_record_with_an_odd_key_is_still_one_line(records, tmp_path):
    data = json.loads(json.dumps(records[0].to_dict()))
    data["flows"]["\n"] = None  # found by the fuzz test: the key went into the message as is
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"flows\.'\\n' is a null, not a dict") as info:
        report.load_records([path])
    assert "\n" not in str(info.value)


def test_a_probe_row_reads_back_what_was_written():
    arrived = ProbeRecord("p", 7, 1_000, 5_000, True, True, 1, guest_rx_ns=2_000)
    row = ProbeRow.of(arrived, [1_000, 1_500, 1_600])
    back = ProbeRow.from_list(json.loads(json.dumps(list(row))))
    assert back == ProbeRow(7, 1_000, 4_000, True, True, 1, [1_000, 1_500, 1_600]) and back.intact_rtt_ns == 4_000
    lost = ProbeRow.of(ProbeRecord("p", 8, 2_000, None, False, False), [])
    damaged = ProbeRow.of(ProbeRecord("p", 9, 3_000, 9_000, True, False), [])
    assert lost.rtt_ns is None and lost.intact_rtt_ns is None and damaged.intact_rtt_ns is None


def test_a_record_from_before_rounds_reads_with_defaults(records, tmp_path):
    data = json.loads(json.dumps(records[1].to_dict()))
    for key in ("round", "attempt", "prober", "host_drops", "host_drop_timeline", "calibration"):
        data.pop(key)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    (old,) = report.load_records([path])
    assert (old.label, old.round, old.attempt, old.prober, old.path) == ("vanilla", 1, None, {}, str(path))
    assert report.rows([old]) == report.rows([records[1]])
