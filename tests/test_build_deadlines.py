"""The build stage runs its commands through the command API, each with a deadline (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import testbed.build

BUILD = Path(testbed.build.__file__).parent


def raw_subprocess(tree: ast.AST) -> list[int]:
    """Lines that import subprocess: commands that bypass core.cmd.run and Step.run."""
    return [n.lineno for n in ast.walk(tree)
            if (isinstance(n, ast.Import) and any(a.name == "subprocess" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and n.module == "subprocess")]


def runs_without_deadline(tree: ast.AST) -> list[int]:
    """Lines that call run(argv, ...) or x.run(argv, ...) without timeout=."""
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and n.args
            and (getattr(n.func, "id", None) == "run" or getattr(n.func, "attr", None) == "run")
            and not any(k.arg == "timeout" for k in n.keywords)]


def test_the_readers_find_what_they_look_for():
    code = ast.parse("import subprocess\nsubprocess.run(['tar'])\nrun(['x'], timeout=5)\nstep.run(['make'], log)\n"
                     "Check().run()\n")
    assert raw_subprocess(code) == [1]
    assert runs_without_deadline(code) == [2, 4]


def test_no_build_module_runs_a_command_behind_the_command_api_or_without_a_deadline():
    found = {}
    for path in sorted(BUILD.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if lines := raw_subprocess(tree) + runs_without_deadline(tree):
            found[path.name] = lines
    assert not found, f"raw subprocess or a command without timeout= (module: lines): {found}"
