"""Kconfig fragments: parse them, and check that a final .config honours them.

kconfig drops an option silently when its dependencies are not met, so
after merge_config.sh and olddefconfig we compare every option a fragment
asked for with what the final .config holds, and explain a dropped one by
the `depends on` lines of its Kconfig entry and which of their symbols are
off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_SYMBOL = re.compile(r"\b([A-Z0-9_]+)\b")

UNSET = "n"


def parse_config_text(text: str, origin: str = "<config>") -> dict[str, str]:
    """Map CONFIG_NAME to its value ('y', 'm', '"str"', '123' or 'n').

    Comment and blank lines are skipped; anything else that is not an
    assignment is an error naming the line, since a typo in a fragment would
    otherwise be ignored by kconfig too.
    """
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if m := _UNSET.match(line):
            values[m.group(1)] = UNSET
        elif line.startswith("#"):
            continue
        elif m := _SET.match(line):
            values[m.group(1)] = m.group(2)
        else:
            raise ConfigError(f"{origin}:{lineno}: not a Kconfig assignment: {raw!r}")
    return values


def parse_config_file(path: Path) -> dict[str, str]:
    try:
        return parse_config_text(path.read_text(), str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config fragment: {exc.strerror}") from None


@dataclass(frozen=True)
class Mismatch:
    """An option a fragment asked for that the final .config does not hold."""

    option: str
    wanted: str
    got: str
    fragment: str

    def describe(self) -> str:
        got = "unset" if self.got == UNSET else self.got
        return f"{self.fragment} asks {self.option}={self.wanted} but the final .config has it {got}"


def merged_requests(fragments: list[tuple[str, dict[str, str]]]) -> dict[str, tuple[str, str]]:
    """Later fragments override earlier ones, as merge_config.sh does."""
    merged: dict[str, tuple[str, str]] = {}
    for origin, values in fragments:
        for option, value in values.items():
            merged[option] = (value, origin)
    return merged


def verify(fragments: list[tuple[str, dict[str, str]]], final: dict[str, str]) -> list[Mismatch]:
    """Every option requested by the fragments that the final config lacks."""
    problems = []
    for option, (wanted, origin) in sorted(merged_requests(fragments).items()):
        got = final.get(option, UNSET)
        if got != wanted:
            problems.append(Mismatch(option, wanted, got, origin))
    return problems


def find_kconfig_entry(source: Path, option: str) -> tuple[Path, list[str]] | None:
    """The Kconfig file defining option and the conditions it needs.

    The conditions are the entry's own `depends on` lines and those of the
    `if` and `menu` blocks around it in the same file (a parent file's `if`
    around a `source` line is not followed).
    """
    symbol = option.removeprefix("CONFIG_")
    header = re.compile(rf"^\s*(menu)?config\s+{re.escape(symbol)}\s*$")
    for kconfig in sorted(source.rglob("Kconfig*")):
        if not kconfig.is_file() or "Documentation" in kconfig.parts:
            continue
        try:
            lines = kconfig.read_text(errors="replace").splitlines()
        except OSError:
            continue
        if not any(header.match(line) for line in lines):
            continue
        return kconfig, _conditions(lines, header)
    return None


def _conditions(lines: list[str], header: re.Pattern[str]) -> list[str]:
    stack: list[list[str]] = []  # one list of conditions per open if/menu/choice block
    in_block_head = False  # right after `menu`/`choice`: its own `depends on` lines follow
    help_indent = -1  # inside a help text: its keyword's indentation
    for i, raw in enumerate(lines):
        line = raw.strip()
        indent = len(raw.expandtabs(8)) - len(raw.expandtabs(8).lstrip())
        if help_indent >= 0:
            if not line or indent > help_indent:
                continue
            help_indent = -1
        if line in ("help", "---help---"):
            help_indent = indent
            continue
        if header.match(raw):
            return [cond for block in stack for cond in block] + _own_depends(lines[i + 1:])
        in_block_head = _track_block(line, stack, in_block_head)
    return []


def _own_depends(following: list[str]) -> list[str]:
    """The `depends on` lines of the entry whose header came just before following."""
    own = []
    for follow in following:
        if re.match(r"^\s*(menu)?config\s|^\s*(endmenu|endif|menu|if|choice|endchoice|source|comment)\b", follow):
            break
        if follow.strip().startswith("depends on"):
            own.append(follow.strip().removeprefix("depends on").strip())
    return own


def _track_block(line: str, stack: list[list[str]], in_block_head: bool) -> bool:
    """Open or close the if/menu/choice block a line starts or ends; whether a block's head goes on."""
    if m := re.match(r"^if\s+(.+)$", line):
        stack.append([m.group(1)])
        return False
    if re.match(r"^(menu\s+\"|choice\b)", line):
        stack.append([])
        return True
    if re.match(r"^(endif|endmenu|endchoice)\b", line):
        if stack:
            stack.pop()
        return False
    if in_block_head and line.startswith("depends on") and stack:
        stack[-1].append(line.removeprefix("depends on").strip())
        return True
    if re.match(r"^(menu)?config\s", line):
        return False
    return in_block_head


def explain(source: Path, option: str, final: dict[str, str]) -> str:
    """Why option is off: the conditions it needs and which symbols in them are off."""
    found = find_kconfig_entry(source, option)
    if found is None:
        return f"no Kconfig entry defines {option} in this source tree"
    kconfig, depends = found
    if not depends:
        return f"{kconfig.relative_to(source)} sets no condition on it (a choice or a select may override it)"
    off = []
    for expr in depends:
        for sym in _SYMBOL.findall(expr):
            if sym in ("y", "m", "n") or sym.isdigit():
                continue
            if final.get(f"CONFIG_{sym}", UNSET) == UNSET and sym not in off:
                off.append(sym)
    text = f"needs {' && '.join(f'({d})' if len(depends) > 1 else d for d in depends)}"
    if off:
        text += f"; off in the final .config: {', '.join('CONFIG_' + s for s in off)}"
    return text
