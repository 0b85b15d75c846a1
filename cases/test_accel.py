"""Under --accel kvm, the guest really runs on KVM (CI on runners with nested
virtualisation checks this, so a silent fall-back to TCG cannot pass as KVM)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.kvm_only]


def test_guest_clocksource_is_kvm_clock(machine, accel):
    assert accel.accel == "kvm", accel.reason
    source = machine.run("cat /sys/devices/system/clocksource/clocksource0/current_clocksource", check=True)
    assert source.stdout.strip() == "kvm-clock", f"the guest's clocksource is {source.stdout.strip()}, not kvm-clock"
    # and the guest sees the KVM hypervisor, not TCG's emulated CPU
    assert "hypervisor" in machine.run("grep -m1 -o hypervisor /proc/cpuinfo").stdout
