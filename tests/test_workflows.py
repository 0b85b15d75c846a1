"""The GitHub Actions workflows pass actionlint (syntax, expressions, shellcheck of run steps)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint() -> Path | None:
    local = Path(sys.executable).parent / "actionlint"
    if local.exists():
        return local
    found = shutil.which("actionlint")
    return Path(found) if found else None


def test_workflows_pass_actionlint():
    tool = actionlint()
    assert tool is not None, "actionlint is not installed: tools/setup installs it (the dev extra)"
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files, f"no workflows in {WORKFLOWS}"
    proc = subprocess.run([str(tool), "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"
