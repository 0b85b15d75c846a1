"""The PRISM series' KUnit tests, run by the guest kernel at boot and read from its log.

A KUnit failure fails this case with the failing KUnit cases and their
diagnostics in the message; a kernel without PRISM skips it.
"""

from __future__ import annotations

import pytest

from testbed.analysis import ktap
from testbed.traffic import prism_knobs

pytestmark = [pytest.mark.vm, pytest.mark.debug_kernel]

# suite -> the least number of cases it must report, and what they cover
SUITES = {
    "prism_classifier": (7, "v4, options, v6, VXLAN, truncated, sets, scrubbing"),
    "prism_queue": (2, "priority first, quota"),
}


@pytest.mark.machine(vcpus=1, queues=1, append=("kunit.enable=1",))
@pytest.mark.parametrize("name", sorted(SUITES))
def test_prism_kunit_suite_passes(machine, kernel, name):
    if not prism_knobs.has_prism(machine):
        pytest.skip(f"kernel {kernel.variant} ({kernel.release}) has no PRISM")
    # the kernel's log buffer, not the serial console: the testbed boots with
    # loglevel=5, and KTAP is printed at KERN_INFO
    log = machine.run("dmesg", check=True).stdout
    suite = ktap.suite(log, name)
    assert suite.ok is True and not suite.failures, suite.table()
    least, covers = SUITES[name]
    assert len(suite.cases) >= least, f"expected {name}'s cases ({covers}):\n{suite.table()}"
