"""PRISM testbed: build kernels and guest images, boot QEMU topologies, measure.

The package follows the pipeline, each part importing only from the ones
before it (a unit test reads the imports and keeps it so):

  core/      errors, config files, progress, the build cache, host paths, namespaces
  analysis/  probe records, latency statistics, integrity, verdicts, the regime, reports (pure)
  build/     kernels and guest images
  vm/        one guest: QEMU's command line, the QEMU and libvirt machines, agent, console
  net/       topologies, the host fabric, the overlay, deployments
  traffic/   mixes, probes, floods, stage counters, PRISM's knobs, the run
  harness/   the pytest plugin and fixtures, the experiment, the doctor
  cli/       `prism-testbed`

What a case asserts with is importable from here: `from testbed import
assert_intact, assert_latency_order, compare`. (Loaded on first use, so
`import testbed` stays cheap for the CLI.)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "assert_intact": "testbed.analysis.verdict",
    "assert_latency_order": "testbed.analysis.verdict",
    "RunResults": "testbed.analysis.verdict",
    "compare": "testbed.analysis.latency",
    "summarize": "testbed.analysis.latency",
    "FASTER": "testbed.analysis.latency",
    "SLOWER": "testbed.analysis.latency",
    "ABOVE": "testbed.analysis.latency",
    "BELOW": "testbed.analysis.latency",
    "INCONCLUSIVE": "testbed.analysis.judge",
    "over_rounds": "testbed.analysis.judge",
    "judge": "testbed.analysis.judge",
    "Deployment": "testbed.net.deployment",
    "Traffic": "testbed.harness.pytest_traffic",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'testbed' has no attribute {name!r}")
