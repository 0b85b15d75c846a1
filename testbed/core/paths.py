"""Where the testbed's data lives: kernel-config/, images/, cases/mixes and cases/topologies.

In a checkout (an editable install, or running from the repository) that is
the repository itself, so edits take effect at once. An installed package
carries a copy (setup.py puts it in testbed/_data) and uses it when there is
no checkout around it. PRISM_TESTBED_ROOT names another directory with the
same layout (a checkout of your own series and mixes) and takes precedence.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

MARKER = Path("kernel-config") / "kernel.toml"  # what makes a directory a data root
CHECKOUT = Path(__file__).resolve().parents[2]
SHIPPED = Path(__file__).resolve().parents[1] / "_data"
ENV = "PRISM_TESTBED_ROOT"


def find_data_root() -> Path:
    """$PRISM_TESTBED_ROOT, else the checkout around the package, else the copy shipped in it (never raises)."""
    if named := os.environ.get(ENV):
        return Path(named).expanduser().resolve()
    return next((root for root in (CHECKOUT, SHIPPED) if (root / MARKER).is_file()), CHECKOUT)


def check_data_root() -> Path:
    """The data root, or a ConfigError in one line saying why there is none (the CLI and the plugin call it first)."""
    if (REPO_ROOT / MARKER).is_file():
        return REPO_ROOT
    if os.environ.get(ENV):
        raise ConfigError(f"{ENV}={os.environ[ENV]}: no {MARKER} there (it must name a directory laid out like "
                          "the testbed's repository)")
    raise ConfigError(f"no testbed data: neither a checkout ({CHECKOUT / MARKER}) nor the installed copy "
                      f"({SHIPPED / MARKER}); reinstall the package or set {ENV}")


REPO_ROOT = find_data_root()
