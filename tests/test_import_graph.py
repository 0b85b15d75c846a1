"""testbed's shape, read from the source (ast), not by importing: no circle, no upward import, short modules."""

from __future__ import annotations

import ast
from pathlib import Path

import testbed

PACKAGE = Path(testbed.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The testbed modules a module imports, at any level (TYPE_CHECKING blocks included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in MODULES}
    return found - {name}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_reader_sees_the_package():
    assert "testbed.analysis.records" in GRAPH["testbed.analysis.verdict"]
    assert "testbed.core.errors" in GRAPH["testbed.analysis.latency"]


def test_a_circle_is_found_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back_through_others():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


# The pipeline's order: a part may import from the parts before it, never from one after it.
LAYERS = ["core", "analysis", "build", "vm", "net", "traffic", "harness", "cli"]
MAX_LINES = 400


def layer(module: str) -> int | None:
    """The index in LAYERS of a module's part (None: testbed's own __init__)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))


def test_every_module_lives_in_a_part_of_the_pipeline():
    loose = sorted(m for m in MODULES if m != "testbed" and m.split(".")[1] not in LAYERS)
    assert not loose, f"modules outside {LAYERS}: {loose}"


def test_an_upward_import_is_found_when_there_is_one():
    assert upward_imports({"testbed.vm.machine": {"testbed.net.fabric", "testbed.core.errors"}}) == [
        "testbed.vm.machine -> testbed.net.fabric"]


def test_no_part_imports_from_a_later_part():
    assert upward_imports(GRAPH) == []


def test_no_module_is_longer_than_a_newcomer_reads_in_one_go():
    long = {m: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
            for m in [module_name(p)]}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_reading_a_mix_loads_no_scapy():
    """A mix is data: its specs live apart from the engines that build frames (testbed.traffic.flows)."""
    import subprocess
    import sys

    code = "import sys, testbed.traffic.mix; print('scapy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False", "import testbed.traffic.mix loaded scapy"
