"""Probe payloads: every probe names itself, and damage is caught from the reply alone."""

from __future__ import annotations

import pytest

from testbed.core.errors import VerdictError
from testbed.traffic import probe


@pytest.mark.parametrize("size", [probe.MIN_SIZE, 64, 1000, 1400, probe.MAX_SIZE])
def test_round_trip(size):
    payload = probe.encode(flow=7, seq=123456, sent_ns=1_700_000_000_123_456_789, size=size)
    assert len(payload) == size
    got = probe.decode(payload)
    assert (got.flow, got.seq, got.sent_ns, got.length) == (7, 123456, 1_700_000_000_123_456_789, size)
    assert got.intact
    assert (got.guest_rx_ns, got.guest_read_ns, got.guest_send_ns) == (0, 0, 0)
    assert payload[probe.STAMPS_OFFSET:probe.FILLER_OFFSET] == bytes(24)  # the sender writes zeros


def test_stamp_sets_the_time_and_keeps_the_crc_right():
    payload = probe.stamp(probe.encode(1, 2, 0, 100), 42)
    got = probe.decode(payload)
    assert got.sent_ns == 42 and got.intact


# every byte the sender wrote: header, the reserved bytes, filler, the CRC itself
@pytest.mark.parametrize("offset", [0 + 6, 10, 19, 22, 23, 48, 60, 99 - 4, 99])
def test_any_flipped_byte_is_caught(offset):
    payload = bytearray(probe.fill_stamps(probe.encode(3, 9, 1000, 100), 5, 6, 7))
    payload[offset] ^= 0x01
    got = probe.decode(bytes(payload))
    assert got.length_ok and not got.crc_ok


def test_stamps_the_reflector_writes_leave_the_crc_alone_and_decode():
    payload = probe.fill_stamps(probe.encode(3, 9, 1000, 64), 1_700_000_000_000_000_001, 1_700_000_000_000_000_002,
                                1_700_000_000_000_000_003)
    got = probe.decode(payload)
    assert got.intact and (got.flow, got.seq, got.sent_ns) == (3, 9, 1000)
    assert (got.guest_rx_ns, got.guest_read_ns, got.guest_send_ns) == (1_700_000_000_000_000_001,
                                                                      1_700_000_000_000_000_002,
                                                                      1_700_000_000_000_000_003)
    # the stamp block sits at a fixed place between header and filler, in network byte order
    assert payload[probe.STAMPS_OFFSET:probe.STAMPS_OFFSET + 8] == (1_700_000_000_000_000_001).to_bytes(8, "big")
    assert probe.STAMPS_OFFSET == probe.HEADER_SIZE == 24 and probe.FILLER_OFFSET == 48


def test_minimum_size_leaves_room_for_the_smallest_probes_shipped():
    # the mixes and cases send 64-byte probes and up; the payload needs header, stamps and CRC
    assert probe.MIN_SIZE == 52 <= 64
    assert probe.decode(probe.encode(1, 1, 0, probe.MIN_SIZE)).intact


def test_truncated_and_padded_payloads_fail_the_length_check():
    payload = probe.encode(3, 9, 1000, 200)
    assert not probe.decode(payload[:150]).length_ok
    assert not probe.decode(payload + b"\0").length_ok
    assert not probe.decode(payload[:150]).intact


def test_filler_differs_between_probes():
    a, b = probe.encode(1, 1, 0, 200), probe.encode(1, 2, 0, 200)
    assert a[probe.FILLER_OFFSET:-4] != b[probe.FILLER_OFFSET:-4]


@pytest.mark.parametrize("junk", [b"", b"PRS", b"XXXX" + bytes(40)])
def test_not_a_probe(junk):
    with pytest.raises(VerdictError, match="not a probe payload"):
        probe.decode(junk)


@pytest.mark.parametrize("version", [1, 9])
def test_unknown_version_is_refused(version):
    payload = bytearray(probe.encode(1, 1, 0, 64))
    payload[4] = version  # 1: the layout before the stamp block
    with pytest.raises(VerdictError, match=f"version {version}, expected 2"):
        probe.decode(bytes(payload))


@pytest.mark.parametrize("args", [(0, 0, 0, probe.MIN_SIZE - 1), (0, 0, 0, probe.MAX_SIZE + 1),
                                  (1 << 16, 0, 0, 64), (0, 1 << 32, 0, 64), (0, 0, -1, 64)])
def test_out_of_range_probe_is_refused(args):
    with pytest.raises(ValueError):
        probe.encode(*args)
