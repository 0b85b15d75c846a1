"""A read-only cache: every command that writes says so in one line, doctor fails its row.

A real read-only tmpfs (the suite runs as root), since root writes through
permission bits and only a read-only mount makes a write fail.
"""

from __future__ import annotations

import subprocess

import pytest

from testbed import cli
from testbed.harness import doctor


@pytest.fixture
def readonly_cache(tmp_path, monkeypatch):
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(mount))
    try:
        for kind, key in (("kernels", "vanilla-0123"), ("images", "base-4567")):  # something to clean
            (mount / "prism-testbed" / kind / key).mkdir(parents=True)
            (mount / "prism-testbed" / kind / key / "file").write_bytes(b"x" * 4096)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("argv", [["kernel", "build", "vanilla"], ["image", "build"], ["cache", "clean"],
                                  ["cache", "clean", "--all"]])
def test_commands_that_write_the_cache_say_it_is_read_only(readonly_cache, capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Read-only file system" in lines[0] and str(readonly_cache) in lines[0], err
    assert "Traceback" not in err


def test_doctor_fails_the_cache_row_on_a_read_only_cache(readonly_cache):
    check = doctor.check_cache_size()
    assert check.status == "fail" and check.required and "Read-only file system" in check.detail
