"""Where a probe's time went: the split of its RTT from host and guest stamps on unsynchronised clocks."""

from __future__ import annotations

import json
import random

import pytest

from testbed.analysis import breakdown
from testbed.analysis.latency import percentile
from testbed.analysis.verdict import ProbeRecord

HOST_T0 = 1_700_000_000_000_000_000
OFFSET = 123_456_789  # the guest's clock runs this far ahead of the host's


def probe(seq: int, a: int, b: int, c: int, d: int, offset: int = OFFSET, **kw) -> ProbeRecord:
    """A record of a probe whose four parts took a, b, c, d ns, as the two clocks would stamp it."""
    sent = HOST_T0 + seq * 5_000_000
    rx = sent + a + offset
    return ProbeRecord(kw.pop("flow", "p"), seq, sent, sent + a + b + c + d, True, True, 0,
                       rx, rx + b, rx + b + c, **kw)


def synthetic(n: int = 200, seed: int = 1) -> tuple[list[ProbeRecord], list[tuple[int, int, int, int]]]:
    """n probes; every tenth crosses both ways at the (equal) minimum, the others queue on the way."""
    rng = random.Random(seed)
    truth = []
    for seq in range(n):
        base = 40_000
        qa, qd = (0, 0) if seq % 10 == 0 else (rng.randint(1_000, 500_000), rng.randint(1_000, 300_000))
        truth.append((base + qa, rng.randint(2_000, 900_000), rng.randint(500, 5_000), base + qd))
    return [probe(seq, *parts) for seq, parts in enumerate(truth)], truth


def test_the_split_recovers_known_parts_and_offset():
    records, truth = synthetic()
    assert breakdown.estimate_offset(records) == OFFSET
    for r, parts in zip(records, truth, strict=True):
        s = breakdown.split(r, OFFSET)
        assert (s.to_namespace_ns, s.namespace_wait_ns, s.reflector_ns, s.back_ns) == parts
        assert s.rtt_ns == sum(parts) == r.received_ns - r.sent_ns
    found = breakdown.breakdown(records)
    assert (found.flow, found.probes, found.unstamped, found.offset_ns, found.offset_probes) == ("p", 200, 0, OFFSET, 20)
    for i, name in enumerate(breakdown.COMPONENTS):
        values = [t[i] for t in truth]
        part = getattr(found, name)
        assert part.p50 == pytest.approx(percentile(values, 50) / 1000)
        assert part.p99 == pytest.approx(percentile(values, 99) / 1000)
        assert part.mean == pytest.approx(sum(values) / len(values) / 1000)
        assert part.share == pytest.approx(sum(values) / sum(map(sum, truth)))
    assert sum(getattr(found, c).share for c in breakdown.COMPONENTS) == pytest.approx(1.0)
    assert found.offset_drift_ns == 0


def test_a_negative_offset_and_a_different_seed_work_the_same():
    rng = random.Random(7)
    truth = [(30_000 + (0 if i % 5 == 0 else rng.randint(1, 90_000)), 10_000, 1_000,
              30_000 + (0 if i % 5 == 0 else rng.randint(1, 90_000))) for i in range(50)]
    records = [probe(i, *t, offset=-5_000_000_000) for i, t in enumerate(truth)]
    found = breakdown.breakdown(records)
    assert found.offset_ns == -5_000_000_000
    assert found.to_namespace.mean == pytest.approx(sum(t[0] for t in truth) / 50 / 1000)


def test_asymmetric_minimum_paths_move_half_the_difference_but_not_the_sum():
    # 30 µs out, 50 µs back at best: the estimate assumes 40/40, so each probe's split is 10 µs off,
    # while (a)+(d), the wait and the reflector's time stay exact
    records = [probe(i, 30_000, 7_000, 1_000, 50_000) for i in range(20)]
    found = breakdown.breakdown(records)
    assert found.offset_ns == OFFSET - 10_000
    assert (found.to_namespace.p50, found.back.p50) == (40.0, 40.0)
    assert (found.namespace_wait.p50, found.reflector.p50) == (7.0, 1.0)
    assert found.to_namespace.mean + found.back.mean == pytest.approx(80.0)


def test_a_guest_clock_that_drifts_shows_in_offset_drift():
    records = [probe(i, 40_000, 5_000, 1_000, 40_000, offset=OFFSET + i * 1_000) for i in range(100)]
    found = breakdown.breakdown(records)
    assert 40_000 <= found.offset_drift_ns <= 60_000  # 1 µs per probe, half a run apart
    steady = breakdown.breakdown([probe(i, 40_000, 5_000, 1_000, 40_000) for i in range(100)])
    assert steady.offset_drift_ns == 0


def test_the_offset_rests_on_the_least_delayed_probes():
    # a burst of queueing on the way out only would pull a plain median far off
    records = [probe(i, 40_000 + (0 if i < 20 else 400_000), 5_000, 1_000, 40_000) for i in range(100)]
    assert breakdown.estimate_offset(records) == OFFSET
    assert breakdown.breakdown(records).to_namespace.p99 == pytest.approx(440.0)


def unstamped(seq: int, **kw) -> ProbeRecord:
    sent = HOST_T0 + seq * 1000
    return ProbeRecord("icmp", seq, sent, sent + 80_000, True, True, 0, **kw)


def test_a_flow_without_stamps_has_no_breakdown_not_zeros():
    records = [unstamped(i) for i in range(10)]
    assert breakdown.breakdown(records) is None
    assert breakdown.record_fields(records) is None
    assert breakdown.estimate_offset(records) is None
    assert breakdown.breakdown([]) is None
    lost = ProbeRecord("p", 0, HOST_T0, None, True, True)
    assert breakdown.breakdown([lost]) is None


def test_damaged_partial_and_disordered_stamps_are_left_out_and_counted():
    good, _ = synthetic(20)
    bad_crc = ProbeRecord("p", 21, HOST_T0, HOST_T0 + 10, True, False, 0, 5, 6, 7)
    no_kernel_stamp = ProbeRecord("p", 22, HOST_T0, HOST_T0 + 100_000, True, True, 0, None, 6, 7)
    disordered = ProbeRecord("p", 23, HOST_T0, HOST_T0 + 100_000, True, True, 0, 9, 6, 7)
    lost = ProbeRecord("p", 24, HOST_T0, None, True, True)
    found = breakdown.breakdown([*good, bad_crc, no_kernel_stamp, disordered, lost])
    assert found.probes == 20
    assert found.unstamped == 2  # received intact but not broken down; the corrupted and the lost are neither
    assert found.offset_ns == OFFSET
    assert breakdown.split(disordered, 0) is None


def test_record_fields_is_plain_json():
    records, _ = synthetic(50)
    fields = breakdown.record_fields(records)
    assert json.loads(json.dumps(fields)) == fields
    assert set(fields) >= {"flow", "probes", "offset_ns", "rtt", *breakdown.COMPONENTS}
    assert set(fields["namespace_wait"]) == {"p50", "p99", "mean", "share"}


def test_probe_stamps_are_compact_and_restore_exactly():
    r = probe(3, 40_000, 7_000, 1_000, 40_000)
    stored = breakdown.probe_stamps(r)
    assert stored == [r.guest_rx_ns - r.sent_ns, r.guest_read_ns - r.sent_ns, r.guest_send_ns - r.sent_ns]
    assert stored == [OFFSET + 40_000, OFFSET + 47_000, OFFSET + 48_000]
    assert breakdown.restore_stamps(r.sent_ns, json.loads(json.dumps(stored))) == (
        r.guest_rx_ns, r.guest_read_ns, r.guest_send_ns)
    assert breakdown.probe_stamps(unstamped(1)) == []
    assert breakdown.restore_stamps(5, []) == (None, None, None)
    partial = unstamped(1, guest_read_ns=HOST_T0 + 3000, guest_send_ns=HOST_T0 + 4000)
    assert breakdown.probe_stamps(partial) == [None, 2000, 3000]
    assert breakdown.restore_stamps(partial.sent_ns, [None, 2000, 3000]) == (None, HOST_T0 + 3000, HOST_T0 + 4000)


def test_breakdown_rows_header_first_from_objects_or_json():
    found = breakdown.breakdown([probe(i, 40_000, 7_000, 1_000, 52_000) for i in range(10)])
    as_json = json.loads(json.dumps(found.to_dict()))
    rows = breakdown.breakdown_rows({"prism": {"priority": found, "icmp": None}, "vanilla": {"priority": as_json}})
    assert rows[0] == breakdown.BREAKDOWN_HEADER and len(rows[0]) == len(rows[1])
    assert rows[1] == ["prism", "priority", "10", "100.0 / 100.0", "46.0 / 46.0", "7.0 / 7.0", "1.0 / 1.0",
                       "46.0 / 46.0", "46% / 7% / 1% / 46%", "0.0"]
    assert rows[2][:3] == ["prism", "icmp", "0"] and "no guest stamps" in rows[2]
    assert rows[3] == ["vanilla", *rows[1][1:]]


def test_stacked_plot_writes_a_png(tmp_path):
    a = breakdown.breakdown([probe(i, 40_000, 7_000, 1_000, 52_000) for i in range(10)])
    b = breakdown.record_fields([probe(i, 40_000, 900_000, 1_000, 52_000) for i in range(10)])
    path = breakdown.stacked_plot({"prism": {"priority": a, "bulk": None}, "vanilla": {"priority": b}},
                                  tmp_path / "plots" / "breakdown.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = breakdown.stacked_plot({"vanilla": {"icmp": None}}, tmp_path / "empty.png")
    assert empty.stat().st_size > 0
