"""Trace events recorded in a guest around a traffic run, and kept when a rare failure needs them.

For a failure seen once in thousands of probes the records say which probe
was late, but not which NAPI or CPU delivered it. A case records the events
that do (napi:napi_poll, net:netif_rx, ...) while it runs and saves them
next to its records only when it fails. The clock is `tai`, which is
CLOCK_REALTIME in a guest without a TAI offset: the same clock as the
probes' guest stamps (SO_TIMESTAMPNS), so the two line up. Needs a kernel
with trace events (the prism-debug variant).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

TRACEFS = "/sys/kernel/tracing"


def available(vm) -> bool:
    """Does the guest's kernel have trace events?"""
    return vm.run("grep -qw tracefs /proc/filesystems").exit_code == 0


class Recording:
    """The events a guest is recording; `save` copies them out."""

    def __init__(self, vm, events: tuple[str, ...]):
        self.vm, self.events = vm, events

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.vm.run(f"cat {TRACEFS}/trace", timeout=120, check=True).stdout)
        return path


@contextlib.contextmanager
def recording(vm, events: tuple[str, ...], buffer_kb: int = 8192) -> Iterator[Recording]:
    """Record events (e.g. "napi/napi_poll") in vm for the length of a with block; the buffer stays for `save`."""
    enable = " && ".join(f"echo 1 > {TRACEFS}/events/{event}/enable" for event in events)
    vm.run(f"grep -q ' {TRACEFS} tracefs' /proc/mounts || mount -t tracefs nodev {TRACEFS}; "
           f"echo 0 > {TRACEFS}/tracing_on && echo tai > {TRACEFS}/trace_clock && "
           f"echo {buffer_kb} > {TRACEFS}/buffer_size_kb && echo > {TRACEFS}/trace && {enable} && "
           f"echo 1 > {TRACEFS}/tracing_on", check=True)
    try:
        yield Recording(vm, events)
    finally:
        vm.run(f"echo 0 > {TRACEFS}/tracing_on; echo 0 > {TRACEFS}/events/enable", timeout=30)
