"""Run directories: claimed with their owner in one step; the reaper spares live owners."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from testbed.net import fabric
from testbed.vm import guest_shell


@pytest.fixture
def runtime(monkeypatch, tmp_path):
    """A private runtime base; the host's real namespaces and QEMUs are never looked at."""
    monkeypatch.setattr(fabric, "runtime_base", lambda: tmp_path)
    monkeypatch.setattr(fabric, "_netns_names", lambda: [])
    monkeypatch.setattr(fabric, "_qemu_pids_of", lambda run_id: [])
    return tmp_path


def test_claim_creates_the_directory_with_its_owner(runtime):
    path = fabric.claim_run_dir("aa11")
    assert path == runtime / "aa11" and fabric._owner_alive("aa11")
    assert not [p for p in runtime.iterdir() if p.name.startswith(".")], "no staging directory left"
    fabric.claim_run_dir("aa11")  # again (the fabric of a supervised run): still owned, files kept
    assert fabric._owner_alive("aa11")


def test_reaper_spares_live_owners_and_removes_dead_ones(runtime):
    fabric.claim_run_dir("live")
    dead = runtime / "dead"
    dead.mkdir()
    (dead / "owner").write_text("999999999 12345\n")  # no such process
    (runtime / ".half.abc").mkdir()  # another process's claim in progress
    reaped = fabric.reap_stale()
    assert [r.split(":")[0] for r in reaped] == ["run dead"]
    assert (runtime / "live").is_dir() and (runtime / ".half.abc").is_dir() and not dead.exists()


@pytest.mark.parametrize("script", [guest_shell.start_script(), guest_shell.reset_script(),
                                    guest_shell.SESSION, guest_shell.LOOP])
def test_guest_shell_scripts_are_valid_sh(script):
    proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_end_marker_carries_the_status():
    found = guest_shell._END.search(b"out\x1b]prism-testbed;end;42\x07more")
    assert found and int(found.group(1)) == 42


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_reaper_leaves_a_namespace_it_has_no_record_of(tmp_path, monkeypatch):
    """`ip netns add prism-userlab` is the user's: named like ours, but no run directory records it."""
    monkeypatch.setattr(fabric, "runtime_base", lambda: tmp_path)
    foreign = f"{fabric.NETNS_PREFIX}userlab{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        reaped = fabric.reap_stale()
        assert foreign in _netns(), f"the reaper deleted {foreign}, which it did not make: {reaped}"
        assert foreign in fabric.unrecorded()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)


def test_reaper_removes_the_namespace_of_a_recorded_dead_run(tmp_path, monkeypatch):
    monkeypatch.setattr(fabric, "runtime_base", lambda: tmp_path)
    run_id = secrets.token_hex(4)
    (tmp_path / run_id).mkdir()
    (tmp_path / run_id / "owner").write_text("999999999 12345\n")  # no such process
    subprocess.run(["ip", "netns", "add", f"{fabric.NETNS_PREFIX}{run_id}"], check=True)
    try:
        reaped = fabric.reap_stale()
        assert [r.split(":")[0] for r in reaped] == [f"run {run_id}"]
        assert f"{fabric.NETNS_PREFIX}{run_id}" not in _netns() and not (tmp_path / run_id).exists()
        assert f"{fabric.NETNS_PREFIX}{run_id}" not in fabric.unrecorded()
    finally:
        subprocess.run(["ip", "netns", "del", f"{fabric.NETNS_PREFIX}{run_id}"], check=False, capture_output=True)
