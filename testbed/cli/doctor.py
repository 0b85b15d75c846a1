"""`prism-testbed doctor`: what this host offers, one line per check."""

from __future__ import annotations

import argparse

from rich.table import Table

from ..core.progress import console
from ..harness import doctor

STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}


def cmd_doctor(args: argparse.Namespace) -> int:
    with console.status("checking the host (the KVM probe may boot a kernel once)"):
        checks = doctor.run_checks()
    table = Table(title="prism-testbed doctor")
    for column in ("check", "status", "required", "why"):
        table.add_column(column)
    for c in checks:
        table.add_row(c.name, STYLE.get(c.status, c.status), "yes" if c.required else "", c.detail)
    console.print(table)
    blocking = [c.name for c in checks if c.blocking]
    if blocking:
        console.print(f"[red]missing what runs need: {', '.join(blocking)}[/]")
        return 1
    return 0


def add_parsers(sub) -> None:
    sub.add_parser("doctor", help="check what this host offers (QEMU, KVM, taps, netns, disk, cache)",
                   ).set_defaults(func=cmd_doctor)
