"""The GitHub Actions workflows pass actionlint (syntax, expressions, shellcheck of run steps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    if tool is None:
        message = "actionlint is not installed: pip install -e '.[actions]' (its build downloads actionlint)"
        if os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail(message)
        pytest.skip(message)
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files, f"no workflows in {WORKFLOWS}"
    proc = subprocess.run([str(tool), "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"
