"""The shape of a run record, as the report's tables read it.

A record that does not have this shape is not compared: a report never
silently compares incomplete data, and never fails with a KeyError deep in a
table. The shape is data: a dict maps keys to shapes, `Each(shape)` is every
value of a dict or item of a list, `Row(shapes)` a list's first items, a
tuple is "any of these".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Number = (int, float)
NoneType = type(None)


@dataclass(frozen=True)
class Each:
    """Every item of a list, or every value of a dict, has this shape."""

    shape: Any
    container: type = dict


@dataclass(frozen=True)
class Row:
    """A list whose first items have these shapes, in order (more may follow)."""

    shapes: tuple


PROBE = Row((int, int, (int, NoneType), bool, bool))  # seq, sent_ns, rtt_ns | None, length_ok, crc_ok, …
FLOW = {
    "class": str,
    "summary": (dict, NoneType),
    "integrity": {k: int for k in ("sent", "received", "lost", "duplicated", "reordered", "corrupted")},
    "probes": Each(PROBE, list),
}
STAGES = {
    "sockets": Each(dict),
    "softnet": Each(Number),
    "gro_cells_dropped": Each(Number),
    "host_tap": {"dropped": Number},
    "peak_backlog": Number,
}
RECORD = {
    "label": str,
    "kernel": {"variant": str},
    "mix": {"name": str, "loaded": bool, "floods": Each({"dst": str}, list)},
    "flows": Each(FLOW),
    "floods": Each({"achieved_pps": Number, "seconds": Number}, list),
    "iperf3": Each({"bits_per_second": Number}, list),
    "stages": Each(STAGES),
    "validity": (str, NoneType),
}


def problem(record: Any, shape: Any = None, where: str = "") -> str | None:
    """Why the record (or a part of it) does not have the shape, or None."""
    shape = RECORD if shape is None else shape
    if isinstance(shape, dict):
        return _dict_problem(record, shape, where)
    if isinstance(shape, Each):
        return _each_problem(record, shape, where)
    if isinstance(shape, Row):
        return _row_problem(record, shape, where)
    kinds = shape if isinstance(shape, tuple) else (shape,)
    if isinstance(record, bool) and bool not in kinds:  # True is an int to Python, not to a record
        return f"{where.rstrip('.')} is a bool, not a {' or '.join(_name(k) for k in kinds)}"
    if not isinstance(record, kinds):
        return f"{where.rstrip('.')} is a {_name(type(record))}, not a {' or '.join(_name(k) for k in kinds)}"
    return None


def _dict_problem(record: Any, shape: dict, where: str) -> str | None:
    if not isinstance(record, dict):
        return f"{where.rstrip('.') or 'the record'} is a {_name(type(record))}, not a dict"
    for key, sub in shape.items():
        if key not in record:
            return f"no {where}{key}"
        if (found := problem(record[key], sub, f"{where}{key}.")) is not None:
            return found
    return None


def _each_problem(record: Any, shape: Each, where: str) -> str | None:
    if not isinstance(record, shape.container) or isinstance(record, str):
        return f"{where.rstrip('.')} is a {_name(type(record))}, not a {shape.container.__name__}"
    items = record.items() if isinstance(record, dict) else enumerate(record)
    for key, value in items:
        if (found := problem(value, shape.shape, f"{where}{_shown(key)}.")) is not None:
            return found
    return None


def _row_problem(record: Any, shape: Row, where: str) -> str | None:
    if not isinstance(record, list) or len(record) < len(shape.shapes):
        return f"{where.rstrip('.')} is not a list of at least {len(shape.shapes)} items"
    for i, sub in enumerate(shape.shapes):
        if (found := problem(record[i], sub, f"{where}{i}.")) is not None:
            return found
    return None


def _shown(key: object) -> str:
    """A record's own key as it can be printed on one line."""
    text = str(key)
    return text if text and text.isprintable() and "." not in text else repr(text)


def _name(kind: type) -> str:
    return "null" if kind is NoneType else kind.__name__
