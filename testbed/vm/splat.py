"""Kernel splats in a guest console: recognise them and keep their text.

A splat (panic, Oops, BUG, WARNING, KASAN/UBSAN report, soft lockup, hung
task, RCU stall) fails the test that was running even when the test's own
assertions passed, as libbpf's CI does with check-kernel-splats.sh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# (kind, pattern) — checked in order, the first match names the splat.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rx)) for kind, rx in (
        ("panic", r"Kernel panic - not syncing"),
        ("soft lockup", r"watchdog: BUG: soft lockup"),
        ("KASAN", r"BUG: KASAN:|KASAN: "),
        ("UBSAN", r"UBSAN: "),
        ("BUG", r"\bBUG: |kernel BUG at "),
        ("Oops", r"\bOops: |general protection fault"),
        ("WARNING", r"\bWARNING: (CPU: |at |.* at )"),
        ("hung task", r"INFO: task .+ blocked for more than \d+ seconds"),
        ("RCU stall", r"rcu: INFO: .*detected stall|rcu_.* self-detected stall"),
    )
)
# A splat's text runs from its first line to one of these, or MAX_LINES.
_END = re.compile(r"---\[ end (trace|Kernel panic)")
MAX_LINES = 60
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def classify(line: str) -> str | None:
    """The kind of splat a console line starts, or None."""
    for kind, pattern in PATTERNS:
        if pattern.search(line):
            return kind
    return None


@dataclass
class Splat:
    kind: str
    lineno: int  # 1-based line in the console log where it starts
    lines: list[str] = field(default_factory=list)
    complete: bool = False

    @property
    def title(self) -> str:
        return _TIMESTAMP.sub("", self.lines[0]).strip() if self.lines else self.kind

    def text(self) -> str:
        return "\n".join(self.lines)


class SplatScanner:
    """Feeds on console lines, one at a time, and collects splats.

    Lines that belong to a splat being collected (its trace) do not start
    a new one, so a WARNING's 'Call Trace' is one splat, not several.
    """

    def __init__(self) -> None:
        self.splats: list[Splat] = []
        self._lineno = 0
        self._open: Splat | None = None

    def feed(self, line: str) -> None:
        self._lineno += 1
        line = line.rstrip("\r\n")
        if self._open is not None:
            self._open.lines.append(line)
            if _END.search(line) or len(self._open.lines) >= MAX_LINES:
                self._open.complete = True
                self._open = None
            return
        kind = classify(line)
        if kind is not None:
            self._open = Splat(kind, self._lineno, [line])
            self.splats.append(self._open)


class ConsoleWatcher:
    """Follows a console log file as QEMU writes it, and scans it for splats."""

    def __init__(self, path: Path):
        self.path = path
        self.scanner = SplatScanner()
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[Splat]:
        """Read what was written since the last poll; all splats so far."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.scanner.splats
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            self.scanner.feed(raw.decode(errors="replace"))
        return self.scanner.splats

    def mark(self) -> int:
        """A point to ask `since` about: the number of splats seen so far."""
        return len(self.poll())

    def since(self, mark: int) -> list[Splat]:
        return self.poll()[mark:]

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])
