"""testbed.core.cache: atomic, verified, content-addressed entries."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from testbed.core import cache
from testbed.core.cache import MANIFEST, Store, atomic_write_text, file_lock, sha256_file_memo


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "prism-testbed"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def publish(store: Store, key: str, files: dict[str, bytes]):
    with store.staging(key) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return store.entry_path(key)


def test_cache_root_follows_xdg_cache_home(private_cache):
    assert cache.cache_root() == private_cache
    assert Store("kernels").dir == private_cache / "kernels"


def test_staging_publishes_entry_with_manifest(private_cache):
    store = Store("kernels")
    path = publish(store, "k1", {"bzImage": b"kernel bytes", "metadata.json": b'{"release": "6.1"}'})
    assert path == private_cache / "kernels" / "k1"
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest == {"bzImage": sha256(b"kernel bytes"), "metadata.json": sha256(b'{"release": "6.1"}')}
    entry = store.lookup("k1")
    assert entry is not None
    assert entry.key == "k1"
    assert entry.file("bzImage").read_bytes() == b"kernel bytes"
    assert entry.metadata() == {"release": "6.1"}


def test_staging_entry_is_invisible_until_the_block_ends():
    store = Store("kernels")
    with store.staging("k1") as tmp:
        (tmp / "bzImage").write_bytes(b"half")
        assert store.lookup("k1") is None
        assert store.entries() == []
    assert store.lookup("k1") is not None


def test_staging_leaves_no_temporary_directory_after_success():
    store = Store("kernels")
    publish(store, "k1", {"bzImage": b"x"})
    assert [p.name for p in store.dir.iterdir()] == ["k1"]


def test_exception_in_staging_publishes_nothing_and_removes_temp_dir():
    store = Store("kernels")
    with pytest.raises(RuntimeError, match="build failed"), store.staging("k1") as tmp:
        (tmp / "bzImage").write_bytes(b"partial")
        raise RuntimeError("build failed")
    assert list(store.dir.iterdir()) == []
    assert store.lookup("k1") is None


def test_staging_replaces_an_existing_entry():
    store = Store("kernels")
    publish(store, "k1", {"old": b"1"})
    publish(store, "k1", {"new": b"2"})
    assert sorted(p.name for p in store.entry_path("k1").iterdir()) == [MANIFEST, "new"]


@pytest.mark.parametrize("damage", [
    lambda f: f.write_bytes(b"kernel bytEs"),  # same size, edited
    lambda f: f.write_bytes(f.read_bytes()[:5]),  # truncated
    lambda f: f.unlink(),  # gone
], ids=["edited", "truncated", "missing"])
def test_lookup_of_damaged_entry_returns_none_and_removes_it(damage):
    said = []
    store = Store("kernels", on_damaged=said.append)
    path = publish(store, "k1", {"bzImage": b"kernel bytes"})
    damage(path / "bzImage")
    assert store.lookup("k1") is None
    assert not path.exists()
    # it says which entry, which file and how: the hashes, or that the file is gone
    assert len(said) == 1 and str(path) in said[0] and "bzImage" in said[0] and "rebuilt" in said[0]
    assert "is missing" in said[0] or ("sha256" in said[0] and "manifest records" in said[0])


def test_lookup_with_unreadable_manifest_returns_none():
    store = Store("kernels")
    path = publish(store, "k1", {"bzImage": b"kernel bytes"})
    (path / MANIFEST).write_text("{not json")
    assert store.lookup("k1") is None
    assert not path.exists()


def test_lookup_of_missing_key_is_none():
    assert Store("kernels").lookup("nope") is None


def test_entries_lists_published_entries_only():
    store = Store("kernels")
    assert store.entries() == []
    publish(store, "b", {"f": b"1"})
    publish(store, "a", {"f": b"2"})
    with store.locked("c"):  # creates .locks, which is not an entry
        pass
    assert [e.key for e in store.entries()] == ["a", "b"]


# --- sha256_file_memo ----------------------------------------------------


def test_sha256_file_memo_returns_the_file_hash(tmp_path):
    tarball = tmp_path / "linux.tar.xz"
    tarball.write_bytes(b"source" * 1000)
    assert sha256_file_memo(tarball) == sha256(b"source" * 1000)


def test_sha256_file_memo_does_not_reread_an_unchanged_file(tmp_path, monkeypatch):
    tarball = tmp_path / "linux.tar.xz"
    tarball.write_bytes(b"source")
    first = sha256_file_memo(tarball)

    def no_reading(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(cache, "sha256_file", no_reading)
    assert sha256_file_memo(tarball) == first


def test_sha256_file_memo_rehashes_after_size_changes(tmp_path):
    tarball = tmp_path / "linux.tar.xz"
    tarball.write_bytes(b"v1")
    sha256_file_memo(tarball)
    tarball.write_bytes(b"version 2")
    assert sha256_file_memo(tarball) == sha256(b"version 2")


def test_sha256_file_memo_rehashes_after_mtime_changes_at_same_size(tmp_path):
    tarball = tmp_path / "linux.tar.xz"
    tarball.write_bytes(b"aaaa")
    os.utime(tarball, ns=(1_000_000_000, 1_000_000_000))
    assert sha256_file_memo(tarball) == sha256(b"aaaa")
    tarball.write_bytes(b"bbbb")  # same inode, same size
    os.utime(tarball, ns=(2_000_000_000, 2_000_000_000))
    assert sha256_file_memo(tarball) == sha256(b"bbbb")


# --- atomic_write_text -----------------------------------------------------


def test_atomic_write_text_creates_parents_and_writes(tmp_path):
    target = tmp_path / "a" / "b" / "state.json"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n"
    atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no temp file left


def test_atomic_write_text_failure_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old\n")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# --- file_lock -----------------------------------------------------------


def test_file_lock_is_exclusive_between_threads(tmp_path):
    lock = tmp_path / "locks" / "k1.lock"
    order: list[str] = []
    first_holds, second_trying, release_first, second_holds = (threading.Event() for _ in range(4))

    def first():
        with file_lock(lock):
            order.append("first acquired")
            first_holds.set()
            release_first.wait(5)
            order.append("first releasing")

    def second():
        first_holds.wait(5)
        second_trying.set()
        with file_lock(lock):
            order.append("second acquired")
            second_holds.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert second_trying.wait(5)
    # the second thread is now blocked in flock: it must not get in while the first holds it
    assert not second_holds.wait(0.1)
    release_first.set()
    for t in threads:
        t.join(5)
    assert order == ["first acquired", "first releasing", "second acquired"]


def test_file_lock_is_released_when_the_block_raises(tmp_path):
    lock = tmp_path / "k1.lock"
    with pytest.raises(ValueError), file_lock(lock):
        raise ValueError
    acquired = threading.Event()

    def other():
        with file_lock(lock):
            acquired.set()

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert acquired.is_set()
