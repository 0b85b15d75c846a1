"""Which glibc a guest program needs, and whether the guest's glibc is new enough for it.

A dynamically linked program records, per library, the symbol versions it was
linked against (`GLIBC_2.34`, ...; readelf -V calls them "version needs"). The
loader refuses to start it when the libc it finds lacks one of them. A helper
compiled on a host with glibc >= 2.38 needs `GLIBC_2.38` for sscanf/strtol
(`__isoc23_*`), which Debian bookworm's 2.36 does not have: every traffic case
would fail in the guest. The image build and a unit test check the helpers with
this module, so such a binary is refused before it ships.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.cmd import run
from . import deadlines

_NEED_NAME = re.compile(r"\bName:\s*(\S+)")
_GLIBC_NAME = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")


@dataclass(frozen=True, order=True)
class GlibcVersion:
    """An upstream glibc version such as 2.36, compared numerically (2.4 < 2.36)."""

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> GlibcVersion:
        """From '2.36', 'GLIBC_2.36' or a Debian version such as '2.36-9+deb12u14'."""
        found = re.match(r"(?:GLIBC_)?(\d+(?:\.\d+)+)", text.strip())
        if not found:
            raise ValueError(f"not a glibc version: {text!r}")
        return cls(tuple(int(p) for p in found.group(1).split(".")))

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))


@dataclass(frozen=True)
class Requirement:
    """What one program needs from glibc, and what of it a given glibc lacks."""

    program: str
    needs: frozenset[str]  # version names as recorded: GLIBC_2.34, GLIBC_PRIVATE, ...
    missing: tuple[str, ...]

    @property
    def newest(self) -> str:
        numbered = [GlibcVersion.parse(n) for n in self.needs if _GLIBC_NAME.fullmatch(n)]
        return f"GLIBC_{max(numbered)}" if numbered else "none"


def version_needs(readelf_v: str) -> frozenset[str]:
    """The GLIBC_* version names in the "Version needs" section of `readelf -V` output.

    Only that section: the symbol table section above it and a library's own
    "Version definition" section name versions too, but nothing needed.
    """
    needs, inside = set(), False
    for line in readelf_v.splitlines():
        if line.startswith("Version "):  # a section header: needs, definition or symbols
            inside = line.startswith("Version needs section")
        elif inside and (found := _NEED_NAME.search(line)) and found.group(1).startswith("GLIBC_"):
            needs.add(found.group(1))
    return frozenset(needs)


def missing_from(needs: Iterable[str], guest: GlibcVersion) -> tuple[str, ...]:
    """The needed versions that glibc `guest` does not provide, sorted.

    A numbered version newer than the guest's is missing; so is any other
    GLIBC_ name (GLIBC_PRIVATE binds to one exact build of glibc).
    """
    missing = {n for n in needs if not _GLIBC_NAME.fullmatch(n) or GlibcVersion.parse(n) > guest}
    return tuple(sorted(missing))


def requirement(program: Path, guest: GlibcVersion, name: str | None = None) -> Requirement:
    """Read program's version needs with readelf (binutils) and judge them against `guest`."""
    text = run(["readelf", "-V", "--wide", str(program)], timeout=deadlines.READELF, check=True).stdout
    needs = version_needs(text)
    return Requirement(name or program.name, needs, missing_from(needs, guest))


def guest_glibc(packages: str) -> GlibcVersion:
    """The glibc of a root from its package list (dpkg-query lines `package<TAB>version`, as in packages.txt)."""
    for line in packages.splitlines():
        package, _, version = line.partition("\t")
        if package.split(":")[0] == "libc6" and version:
            return GlibcVersion.parse(version)
    raise ValueError("the package list has no libc6: cannot tell the guest's glibc")


def refusal(requirements: Iterable[Requirement], guest: GlibcVersion) -> str | None:
    """One line naming every program that would not start on glibc `guest`, or None when all would."""
    bad = [f"{r.program} needs {', '.join(r.missing)}" for r in requirements if r.missing]
    return f"the guest has glibc {guest}, but {'; '.join(bad)}" if bad else None
