"""What a run may leave on the host: cases check that teardown left none of it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def pids_naming(marker: str) -> list[int]:
    """Processes whose command line contains marker (e.g. a run directory)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids
