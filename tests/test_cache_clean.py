"""`cache clean`: entries go, with their sizes; what another process holds locked stays."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

from testbed import cli
from testbed.core.cache import clean_directory, lock_if_free
from testbed.net import fabric


def _entry(directory, name: str, size: int = 4096):
    (directory / name).mkdir(parents=True)
    (directory / name / "bzImage").write_bytes(os.urandom(size))


def test_removes_free_entries_and_keeps_locked_ones(tmp_path):
    kernels = tmp_path / "kernels"
    _entry(kernels, "vanilla-aaa", 8192)
    _entry(kernels, "prism-bbb")
    _entry(kernels, ".prism-ccc.tmp-xyz")  # staging left by a killed build
    (kernels / ".locks").mkdir()
    with open(kernels / ".locks" / "prism-bbb.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another build holds it (a separate open file: flock conflicts)
        removals = {r.what: r for r in clean_directory(kernels, tmp_path)}
    assert removals["kernels/vanilla-aaa"].size >= 8192 and removals["kernels/vanilla-aaa"].kept is None
    assert removals["kernels/prism-bbb"].kept == "locked by a build in progress"
    assert removals["kernels/.prism-ccc.tmp-xyz"].kept is None
    assert sorted(p.name for p in kernels.iterdir()) == [".locks", "prism-bbb"]


def test_lock_if_free_says_whether_it_got_the_lock(tmp_path):
    lock = tmp_path / "k.lock"
    with lock_if_free(lock) as first:
        assert first
        with lock_if_free(lock) as second:
            assert not second
    with lock_if_free(lock) as again:
        assert again


def test_cli_reports_sizes_freed(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = tmp_path / "prism-testbed"
    _entry(root / "images", "base-123", 1 << 20)
    _entry(root / "kernels", "vanilla-456", 1 << 20)
    assert cli.main(["cache", "clean", "--images"]) == 0
    out = capsys.readouterr().err
    assert "images/base-123" in out and "freed 1.0 MiB (1 entries)" in out
    assert (root / "kernels" / "vanilla-456").is_dir() and not (root / "images" / "base-123").exists()
    assert cli.main(["cache", "clean", "--all"]) == 0
    assert not (root / "kernels" / "vanilla-456").exists()


def test_entries_a_running_qemu_uses_are_kept_and_named(monkeypatch, tmp_path, capsys):
    """A live run's kernel and image stay, with the run that holds them; the rest goes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runtime = tmp_path / "run"
    monkeypatch.setattr(fabric, "runtime_base", lambda: runtime)
    root = tmp_path / "prism-testbed"
    _entry(root / "kernels", "prism-used")
    _entry(root / "kernels", "vanilla-free")
    _entry(root / "images", "base-used")
    (root / "images" / "base-used" / "rootfs.img").write_bytes(b"x")
    # what QEMU's command line looks like to /proc: its kernel, its image, its run directory
    fake = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(60)",
                             "-kernel", str(root / "kernels" / "prism-used" / "bzImage"),
                             "-drive", f"file={root / 'images' / 'base-used' / 'rootfs.img'},if=none,readonly=on",
                             "-chardev", f"socket,id=qmp,path={runtime}/abcd1234/server/qmp.sock"],
                            executable=sys.executable)
    try:
        time.sleep(0.2)
        assert cli.main(["cache", "clean"]) == 0
    finally:
        fake.kill()
        fake.wait()
    out = capsys.readouterr().err
    assert (root / "kernels" / "prism-used").is_dir() and (root / "images" / "base-used").is_dir()
    assert not (root / "kernels" / "vanilla-free").exists()
    assert f"in use by run abcd1234 (QEMU pid {fake.pid})" in out and "kept 2 in use" in out
