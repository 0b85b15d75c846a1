"""Run records, tables, comparisons and the CDF plot, from synthetic runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from testbed import mix as mix_mod
from testbed import report
from testbed import topology as topology_mod
from testbed.accel import AccelChoice
from testbed.errors import ConfigError
from testbed.kernel import Kernel
from testbed.prober import ProbeRun
from testbed.traffic import MixRun
from testbed.verdict import ProbeRecord

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


def record(variant: str, mix: mix_mod.Mix, scale_us: float, seed: int, lose: int = 0) -> dict:
    kernel = Kernel(Path(f"/k/{variant}"), f"6.1.192-{variant}", variant, {"config_sha256": "x"})
    return report.run_record(fake_run(mix, scale_us, seed, lose), kernel=kernel,
                             accel=AccelChoice("tcg", False, "test"), topology=TOPOLOGY, case="cases/x.py::t")


@pytest.fixture
def records() -> list[dict]:
    return [record("vanilla", MIX.without_bulk(), 500, 1), record("vanilla", MIX, 50_000, 2, lose=3),
            record("prism", MIX.without_bulk(), 500, 3), record("prism", MIX, 700, 4)]


def test_a_record_keeps_every_probe_and_the_run_context(records):
    r = records[1]
    assert r["schema"] == report.SCHEMA and r["kernel"]["release"] == "6.1.192-vanilla"
    assert r["accel"] == {"accel": "tcg", "vhost": False, "reason": "test"}
    assert r["topology"]["name"] == "two-vm" and r["mix"]["loaded"] is True
    flow = r["flows"]["priority"]
    assert len(flow["probes"]) == 300 and flow["probes"][0][2] is None and flow["integrity"]["lost"] == 3
    assert flow["summary"]["count"] == 297 and flow["class"] == "priority"
    json.dumps(r)  # plain data all the way down


def test_rows_and_comparisons(records):
    rows = report.rows(records)
    n = len(MIX.probes)
    assert len(rows) == 4 * n and rows[n][:4] == ["vanilla", "overlay-flood", "priority", "priority"]
    assert rows[n][10].startswith("3/0/")  # lost/duplicated/...
    comp = {(r[2], r[0], r[1], r[3]): r for r in report.comparisons(records)}
    assert comp[("prism", "overlay-flood", "priority", "prism vs vanilla")][6] == "faster"
    assert comp[("vanilla", "overlay-flood", "priority", "loaded vs unloaded")][6] == "slower"


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
