"""The package as a user installs it: a wheel (not editable) in a fresh venv, a case run from outside the repository.

The plugin's entry point invites using the testbed from another project;
there no checkout is around, so kernel-config/, images/, the mixes and the
topologies must come with the package (setup.py copies them into the wheel,
testbed.core.paths finds them). The case in the scratch directory boots the
default topology with the shipped data and pings across the overlay; it
shares this run's cache, so the kernel and image it needs are the ones
already built (the same data gives the same cache keys).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from testbed.core import paths

pytestmark = [pytest.mark.vm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_SKIPPED = {".git", ".venv", "results", "build", "dist", "prism_testbed.egg-info", ".pytest_cache", ".ruff_cache"}


def ignored(directory: str, names: list[str]) -> set[str]:
    """What the copy of the working tree leaves out: caches, and at the top the checkout's own build outputs."""
    skipped = {n for n in names if n == "__pycache__"}
    return skipped | (TOP_LEVEL_SKIPPED & set(names) if Path(directory) == REPO else set())

OUTSIDE_CASE = textwrap.dedent('''
    from pathlib import Path

    import testbed
    from testbed.core import paths


    def test_the_installed_testbed_boots_the_shipped_topology(deployment):
        installed = Path(testbed.__file__).resolve().parent
        assert paths.REPO_ROOT == installed / "_data", paths.REPO_ROOT
        c1, s1 = deployment.container("c1"), deployment.container("s1")
        result = c1.exec(f"ping -c 2 -W 5 {s1.address}", timeout=30)
        assert result.ok, result.stdout + result.stderr
''')


def run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    assert done.returncode == 0, f"`{' '.join(argv)}` exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the testbed installed from a wheel; its dependencies come from this run's environment."""
    work = tmp_path_factory.mktemp("installed")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=ignored)  # the working tree as it is, built away from the checkout
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "wheel"), str(source)], 600)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], 120)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", *map(str, (work / "wheel").glob("*.whl"))], 300)
    # The dependencies (scapy, rich, pytest, ...) from this environment, as plain path entries: its .pth
    # files (among them the editable install of the checkout) are not processed there.
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], 60).stdout.strip())
    (site / "zz-prism-testbed-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_an_installed_testbed_finds_its_data_without_a_checkout(installed, tmp_path):
    where = run([str(installed), "-c", "import testbed.core.paths as p, testbed.build.image as i; "
                 "print(p.REPO_ROOT); print(i.load_spec().key())"], 60, cwd=tmp_path).stdout.split()
    assert where[0].endswith("/site-packages/testbed/_data"), where
    assert REPO not in Path(where[0]).parents
    from testbed.build.image import load_spec
    assert where[1] == load_spec().key(), "the shipped image data differs from the checkout's"


def test_a_case_runs_from_outside_the_repository(installed, tmp_path, request):
    outside = tmp_path / "project"
    outside.mkdir()
    (outside / "test_outside.py").write_text(OUTSIDE_CASE)
    kernel = request.config.getoption("kernel") or ["prism"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", paths.ENV)}
    done = subprocess.run([str(installed), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_outside.py",
                           "--kernel", kernel[0], "--results", str(tmp_path / "results")],
                          cwd=outside, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
