"""What every benchmark does with its figures: rich tables on the terminal, one JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from testbed.core.progress import console


def show(title: str, rows: list[dict], skip: tuple[str, ...] = ()) -> None:
    """rows as a table, one column per key of the first row (floats to two places)."""
    table = Table(title=title)
    keys = [k for k in rows[0] if k not in skip]
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(*(f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    console.print(table)


def write(path: Path, figures: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    console.print(f"written: {path}")
