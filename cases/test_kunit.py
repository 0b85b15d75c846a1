"""The PRISM series' KUnit tests, run by the guest kernel at boot and read from its log.

A KUnit failure fails this case with the failing KUnit cases and their
diagnostics in the message; a kernel without PRISM skips it.
"""

from __future__ import annotations

import pytest

from testbed import ktap, prism_knobs

pytestmark = [pytest.mark.vm, pytest.mark.debug_kernel]

SUITE = "prism_classifier"


@pytest.mark.machine(vcpus=1, queues=1, append=("kunit.enable=1",))
def test_prism_classifier_kunit_suite_passes(machine, kernel):
    if not prism_knobs.has_prism(machine):
        pytest.skip(f"kernel {kernel.variant} ({kernel.release}) has no PRISM")
    # the kernel's log buffer, not the serial console: the testbed boots with
    # loglevel=5, and KTAP is printed at KERN_INFO
    log = machine.run("dmesg", check=True).stdout
    suite = ktap.suite(log, SUITE)
    assert suite.ok is True and not suite.failures, suite.table()
    assert len(suite.cases) >= 7, f"expected the classifier's cases (v4, options, v6, VXLAN, truncated, sets):\n{suite.table()}"
