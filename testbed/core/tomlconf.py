"""Reading the testbed's TOML data files, with errors that name file and key.

kernel-config/, images/ and topologies are all data; one set of helpers
gives them the same one-line messages for the same mistakes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import ConfigError

REQUIRED = object()


def read(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def read_named(name_or_path: str | Path, shipped: Path, what: str) -> tuple[dict, Path]:
    """A data file by path, or by name from the shipped directory; (its data, its path).

    A missing one is a one-line error that lists what is shipped.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = shipped / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in shipped.glob("*.toml"))) or "none"
        raise ConfigError(f"{what} {name_or_path}: {path} does not exist (shipped: {known})")
    return read(path, f"{what} {name_or_path}"), path


def check_keys(table: dict, allowed: set[str], where: str) -> dict:
    """table itself, when it has no key outside allowed."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return table


def table(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table")
    return value


def typed(table: dict, key: str, kind: type | tuple[type, ...], where: str, default: object = REQUIRED):
    """table[key] checked to be a kind, or one of several (a bool is no int); default when absent."""
    if key not in table:
        if default is REQUIRED:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {key!r} must be {names}, not {type(value).__name__}")
    return value
