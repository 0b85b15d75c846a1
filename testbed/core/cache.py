"""The content-addressed cache under $XDG_CACHE_HOME/prism-testbed.

An entry is a directory named by the hash of everything that went into it.
It is built in a temporary sibling directory and renamed into place, so a
reader sees either a whole entry or none; a per-entry lock makes two runs
that want the same entry build it once. Each entry lists its files with
their sha256 in `manifest.json`, checked on read, so a truncated or edited
artifact is detected and rebuilt rather than booted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CacheError

MANIFEST = "manifest.json"
# errnos that are the host's filesystem, not a bug: read-only, full, over quota, no permission
HOST_FS_ERRORS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM}


def cache_root() -> Path:
    """Where every cached artifact lives; honours XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "prism-testbed"


def work_root() -> Path:
    """Scratch space for builds in progress, on the same filesystem as the cache."""
    root = cache_root() / "work"
    with writing("no scratch space for a build"):
        root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_memo(path: Path) -> str:
    """sha256 of a large, rarely changing file (a source tarball).

    Remembered under the cache keyed by the file's identity (device, inode,
    size, mtime), so a cache lookup does not re-read 140 MB every time.
    """
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"
    memo = cache_root() / "hash-memo" / sha256_bytes(ident.encode())
    with contextlib.suppress(OSError):
        value = memo.read_text().strip()
        if len(value) == 64:
            return value
    value = sha256_file(path)
    with contextlib.suppress(OSError):  # a memo that cannot be kept costs a re-read next time, nothing else
        atomic_write_text(memo, value + "\n")
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers never see it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn a failed write under the cache (read-only, full, no permission) into one line saying so."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in HOST_FS_ERRORS:
            raise
        raise CacheError(f"{what}: {exc.filename or cache_root()}: {exc.strerror} (the cache is {cache_root()}; "
                         "XDG_CACHE_HOME moves it)") from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, released however the block ends."""
    with writing("cannot lock a cache entry"):
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")  # closed by the `with f` below, after the lock is released
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class CacheEntry:
    """One published entry: a directory of files and their manifest."""

    path: Path

    @property
    def key(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def metadata(self) -> dict:
        return json.loads((self.path / "metadata.json").read_text())

    def verify(self) -> str | None:
        """None when every file matches the manifest, else what is wrong."""
        try:
            manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            return f"manifest unreadable: {exc}"
        for name, expected in manifest.items():
            target = self.path / name
            if not target.is_file():
                return f"{name} is missing"
            if (found := sha256_file(target)) != expected:
                return f"{name} has sha256 {found[:16]}…, its manifest records {expected[:16]}…"
        return None


def _warn(message: str) -> None:
    """Say it on stderr, where the build's progress goes too."""
    print(f"prism-testbed: {message}", file=sys.stderr, flush=True)


class Store:
    """A kind of cached artifact (kernels, images) under the cache root."""

    def __init__(self, kind: str, root: Path | None = None, on_damaged: Callable[[str], None] | None = None):
        self.dir = (root or cache_root()) / kind
        self.on_damaged = on_damaged or _warn



    def entry_path(self, key: str) -> Path:
        return self.dir / key

    def lookup(self, key: str) -> CacheEntry | None:
        """The verified entry for key, or None (a damaged entry is removed)."""
        path = self.entry_path(key)
        if not path.is_dir():
            return None
        entry = CacheEntry(path)
        problem = entry.verify()
        if problem is None:
            return entry
        self.on_damaged(f"cache entry {path} is damaged ({problem}): removed, it will be rebuilt")
        shutil.rmtree(path, ignore_errors=True)
        return None

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        with file_lock(self.dir / ".locks" / f"{key}.lock"):
            yield

    @contextlib.contextmanager
    def staging(self, key: str) -> Iterator[Path]:
        """A temporary directory that becomes the entry if the block succeeds.

        On any exception the directory is removed and nothing is published.
        Call under `locked(key)`.
        """
        with writing(f"cannot stage cache entry {key}"):
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=f".{key}.tmp-"))
        try:
            with writing(f"cannot write cache entry {key}"):
                yield tmp
                write_manifest(tmp)
                final = self.entry_path(key)
                if final.exists():
                    shutil.rmtree(final)
                os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def entries(self) -> list[CacheEntry]:
        if not self.dir.is_dir():
            return []
        return [CacheEntry(p) for p in sorted(self.dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def write_manifest(directory: Path) -> None:
    """Record the sha256 of every regular file in directory (not recursive)."""
    manifest = {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


# --- cleaning ------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    """Bytes on disk under path, each hard-linked file counted once."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_blocks * 512
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


@contextlib.contextmanager
def lock_if_free(path: Path) -> Iterator[bool]:
    """Take an exclusive lock only if nobody holds it; yields whether we got it."""
    with writing("cannot lock a cache entry"):
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")  # closed by the `with f` below
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Removal:
    """One cache entry `cache clean` removed, or kept and why."""

    what: str
    size: int
    kept: str | None = None


def _lock_of(directory: Path, entry: Path) -> Path:
    """The lock guarding an entry: `.locks/KEY.lock` (a staging dir `.KEY.tmp-*` has its key's)."""
    if entry.name.startswith("."):
        key = entry.name[1:].split(".tmp-")[0]
        matches = sorted((directory / ".locks").glob(f"{key}*.lock"))  # sources stage under a short prefix
        return matches[0] if matches else directory / ".locks" / f"{key}.lock"
    if directory.name == "downloads":
        return entry.parent / f"{entry.name.split('.', 1)[0]}.tar.lock"
    return directory / ".locks" / f"{entry.name}.lock"


def clean_directory(directory: Path, base: Path | None = None,
                    in_use: Callable[[Path], str | None] = lambda entry: None) -> list[Removal]:
    """Remove every entry of a cache directory whose lock no other process holds.

    Entries (and staging directories left by killed builds) are removed
    under their lock, so a build or unpack in progress elsewhere is never
    pulled from under it; those are reported as kept, as are entries
    `in_use` names a holder for (a running VM's kernel or image).
    """
    base = base or cache_root()
    removals: list[Removal] = []
    if not directory.is_dir():
        return removals
    for entry in sorted(directory.iterdir()):
        if entry.name == ".locks" or entry.suffix == ".lock":
            continue
        what = str(entry.relative_to(base))
        holder = in_use(entry)
        if holder:
            removals.append(Removal(what, 0, f"in use by {holder}"))
            continue
        with lock_if_free(_lock_of(directory, entry)) as free:
            if not free:
                removals.append(Removal(what, 0, "locked by a build in progress"))
                continue
            size = tree_size(entry)
            with writing(f"cannot remove {what}"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            removals.append(Removal(what, size))
    return removals
