"""Probe payloads: every probe names itself, and damage is caught from the reply alone."""

from __future__ import annotations

import pytest

from testbed import probe
from testbed.errors import VerdictError


@pytest.mark.parametrize("size", [probe.MIN_SIZE, 64, 1000, 1400, probe.MAX_SIZE])
def test_round_trip(size):
    payload = probe.encode(flow=7, seq=123456, sent_ns=1_700_000_000_123_456_789, size=size)
    assert len(payload) == size
    got = probe.decode(payload)
    assert (got.flow, got.seq, got.sent_ns, got.length) == (7, 123456, 1_700_000_000_123_456_789, size)
    assert got.intact


def test_stamp_sets_the_time_and_keeps_the_crc_right():
    payload = probe.stamp(probe.encode(1, 2, 0, 100), 42)
    got = probe.decode(payload)
    assert got.sent_ns == 42 and got.intact


@pytest.mark.parametrize("offset", [0 + 6, 10, 30, 99 - 4, 99])
def test_any_flipped_byte_is_caught(offset):
    payload = bytearray(probe.encode(3, 9, 1000, 100))
    payload[offset] ^= 0x01
    got = probe.decode(bytes(payload))
    assert got.length_ok and not got.crc_ok


def test_truncated_and_padded_payloads_fail_the_length_check():
    payload = probe.encode(3, 9, 1000, 200)
    assert not probe.decode(payload[:150]).length_ok
    assert not probe.decode(payload + b"\0").length_ok
    assert not probe.decode(payload[:150]).intact


def test_filler_differs_between_probes():
    a, b = probe.encode(1, 1, 0, 200), probe.encode(1, 2, 0, 200)
    assert a[probe.HEADER_SIZE:-4] != b[probe.HEADER_SIZE:-4]


@pytest.mark.parametrize("junk", [b"", b"PRS", b"XXXX" + bytes(40)])
def test_not_a_probe(junk):
    with pytest.raises(VerdictError, match="not a probe payload"):
        probe.decode(junk)


def test_unknown_version_is_refused():
    payload = bytearray(probe.encode(1, 1, 0, 64))
    payload[4] = 9
    with pytest.raises(VerdictError, match="version 9"):
        probe.decode(bytes(payload))


@pytest.mark.parametrize("args", [(0, 0, 0, probe.MIN_SIZE - 1), (0, 0, 0, probe.MAX_SIZE + 1),
                                  (1 << 16, 0, 0, 64), (0, 1 << 32, 0, 64), (0, 0, -1, 64)])
def test_out_of_range_probe_is_refused(args):
    with pytest.raises(ValueError):
        probe.encode(*args)
