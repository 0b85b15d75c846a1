"""libvirt calls have deadlines, and a failed boot names libvirt's own log."""

from __future__ import annotations

import threading

import pytest

from testbed.core.errors import MachineError
from testbed.vm import libvirt_machine


def test_a_call_that_returns_in_time_gives_its_value():
    assert libvirt_machine.bounded("answer", lambda: 42, seconds=5) == 42


def test_a_call_that_raises_raises_its_own_error():
    def broken():
        raise ValueError("libvirt said no")

    with pytest.raises(ValueError, match="libvirt said no"):
        libvirt_machine.bounded("broken", broken, seconds=5)


def test_a_call_that_hangs_fails_with_what_hung_and_the_deadline():
    release = threading.Event()
    try:
        with pytest.raises(MachineError, match=r"libvirt: createXML prism-x did not return within 0.5s"):
            libvirt_machine.bounded("createXML prism-x", release.wait, seconds=0.5)
    finally:
        release.set()  # let the abandoned worker end


def test_the_domain_log_tail_is_quoted(tmp_path):
    (tmp_path / "prism-server.log").write_text("".join(f"line {i}\n" for i in range(30)))
    said = libvirt_machine.domain_log_tail("prism-server", lines=3, log_dir=tmp_path)
    assert said.splitlines() == [f"libvirt's domain log {tmp_path}/prism-server.log, last lines:",
                                 "line 27", "line 28", "line 29"]


@pytest.mark.parametrize("content", [None, ""])
def test_a_missing_or_empty_domain_log_is_said_in_one_line(tmp_path, content):
    if content is not None:
        (tmp_path / "prism-server.log").write_text(content)
    said = libvirt_machine.domain_log_tail("prism-server", log_dir=tmp_path)
    assert "\n" not in said and "prism-server.log" in said
