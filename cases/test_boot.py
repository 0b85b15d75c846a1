"""The foundation: the kernel we built boots, its NIC is what we asked for,
splats fail tests, and a stuck guest command fails clearly."""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET

import pytest

from testbed.core.errors import GuestCommandTimeout, MachineError
from testbed.net.fabric import runtime_dir
from testbed.vm.qemu_cmd import MachineSpec, kernel_args

pytestmark = pytest.mark.vm


def test_guest_runs_the_kernel_we_built(machine, kernel):
    release = machine.run("uname -r", check=True).stdout.strip()
    assert release == kernel.release
    if kernel.variant in ("vanilla", "prism"):
        assert release.endswith(f"-{kernel.variant}"), f"release {release} does not name variant {kernel.variant}"
    # the running config is the one the cache recorded, not a stray build
    options = machine.run("zcat /proc/config.gz", check=True).stdout
    assert "CONFIG_VXLAN=y" in options and "CONFIG_VETH=y" in options


@pytest.mark.machine(vcpus=2, queues=2, speed=40000)
def test_nic_has_the_queues_and_speed_asked_for(machine):
    channels = machine.run("ethtool -l eth0", check=True).stdout
    current = channels.split("Current hardware settings:")[1]
    maximum = channels.split("Current hardware settings:")[0]
    assert re.search(r"Combined:\s+2\b", maximum), channels
    assert re.search(r"Combined:\s+2\b", current), f"the guest does not use both queues:\n{channels}"
    # one rx and one tx queue per channel really exist in the guest
    queues = machine.run("ls /sys/class/net/eth0/queues", check=True).stdout.split()
    assert sorted(queues) == ["rx-0", "rx-1", "tx-0", "tx-1"]
    settings = machine.run("ethtool eth0", check=True).stdout
    assert re.search(r"Speed:\s+40000Mb/s", settings), settings
    assert re.search(r"Duplex:\s+Full", settings), settings


@pytest.mark.machine(vcpus=1, queues=1)
def test_single_queue_nic(machine):
    channels = machine.run("ethtool -l eth0", check=True).stdout
    assert re.search(r"Combined:\s+1\b", channels.split("Current hardware settings:")[1]), channels


def test_guest_command_timeout_is_a_clear_error(machine):
    with pytest.raises(GuestCommandTimeout, match=r"`sleep 30` did not finish in 2s"):
        machine.run("sleep 30", timeout=2)
    # the guest killed the command and still answers
    assert machine.run("echo alive", check=True).stdout.strip() == "alive"
    assert "sleep 30" not in machine.run("ps -eo args", check=True).stdout


NEVER_UP_DEADLINE = 10.0  # s: a TCG kernel prints its first lines within a second or two


def test_a_boot_past_its_deadline_names_the_vm_the_time_and_the_console(kernel, guest_image, accel, backend,
                                                                         fabric):
    """What a user needs when a guest does not come up: which VM, how long, what the console showed last.

    The guest can never come up: its init is `sleep` (a later init= wins), so
    the agent never starts, whatever the host's speed. The deadline is long
    enough for the kernel to print on any host (a sub-second deadline left
    the console empty on a loaded one), and loglevel=7 (after the default 5)
    puts the boot's lines on the console.
    """
    spec = MachineSpec(name="slowpoke", kernel=kernel.bzimage, image=guest_image.root, accel=accel.accel,
                       netns=backend.netns(fabric),
                       append=kernel_args("loglevel=7 init=/bin/busybox -- sleep 3600", "test"))
    vm = backend.machine(spec, runtime_dir(fabric.run_id) / "slowpoke", NEVER_UP_DEADLINE, fabric, fabric.run_id)
    with pytest.raises(MachineError) as info:
        with vm:
            pass
    message = str(info.value)
    assert message.startswith(f"slowpoke: the guest did not come up within {NEVER_UP_DEADLINE:g} s"), message
    tail = message.split("console's last lines", 1)[1]
    assert re.search(r"^\[ *\d+\.\d+\] ", tail, re.M), message  # the boot's own lines, timestamped
    assert "VSERPORT_CHANGE" not in message
    assert not vm.is_running()


def test_guest_command_result_carries_status_and_streams(machine):
    result = machine.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert machine.run(["cat"], input=b"through stdin").stdout == "through stdin"


SPLAT_CASES = textwrap.dedent('''
    import pytest

    def test_warning_passes_its_own_asserts(machine):
        # lkdtm's WARNING is a real WARN_ON splat; the guest survives it
        machine.run("echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT", timeout=20)
        assert machine.run("echo still-up", check=True).stdout.strip() == "still-up"

    def test_sysrq_crash(machine):
        machine.run("echo c > /proc/sysrq-trigger", timeout=20)
''')


def test_splat_fails_the_running_test(pytester, monkeypatch, cache_home, kernel):
    """A WARNING fails a test whose own assertions pass; a panic fails with its text."""
    monkeypatch.setenv("XDG_CACHE_HOME", cache_home)
    pytester.makepyfile(test_splats=SPLAT_CASES)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--rootdir={pytester.path}", f"--junitxml={junit}",
        "--kernel", str(kernel.bzimage), "--results", str(pytester.path / "results"), timeout=600)
    result.assert_outcomes(failed=2)
    failures = {case.get("name").split("[")[0]: case.find("failure") for case in ET.parse(junit).iter("testcase")}
    warning, crash = failures["test_warning_passes_its_own_asserts"], failures["test_sysrq_crash"]
    assert warning.get("message", "").startswith("Failed: kernel splat in vm's console (1): WARNING: CPU:")
    assert "lkdtm_WARNING" in warning.text and "Call Trace:" in warning.text
    assert crash.get("message", "").startswith("Failed: kernel splat in vm's console")
    assert "Kernel panic - not syncing: sysrq triggered crash" in crash.text
