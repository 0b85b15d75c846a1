"""Both backends implement the whole machine interface, with the same signatures.

They had drifted: LibvirtMachine.how_to_reach() took no agent_free, so
`--backend libvirt --keep` after a failed test raised TypeError from
Deployment.describe().
"""

from __future__ import annotations

import inspect

import pytest

from testbed.vm.libvirt_machine import LibvirtMachine
from testbed.vm.machine import Machine
from testbed.vm.machine_common import MachineCommon

ABSTRACT = sorted(MachineCommon.__abstractmethods__)


def test_the_interface_is_not_empty():
    assert {"launch", "wait_ready", "shutdown", "is_running", "how_to_reach"} <= set(ABSTRACT)


@pytest.mark.parametrize("backend", [Machine, LibvirtMachine], ids=lambda c: c.__name__)
def test_a_backend_implements_every_method(backend):
    assert not backend.__abstractmethods__, f"{backend.__name__} lacks {sorted(backend.__abstractmethods__)}"


@pytest.mark.parametrize("backend", [Machine, LibvirtMachine], ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", ABSTRACT)
def test_a_backend_takes_the_interface_parameters(backend, method):
    def params(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(getattr(cls, method)).parameters.values()]

    assert params(backend) == params(MachineCommon), f"{backend.__name__}.{method} differs from the interface"
