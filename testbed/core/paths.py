"""Where the repository's data lives: kernel-config/, images/, cases/mixes and cases/topologies."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
