"""testbed.vm.qemu_cmd: the QEMU command line, built without running anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testbed.core.errors import ConfigError
from testbed.vm.qemu_cmd import MachineSpec, NicSpec, RunFiles, build_argv, kernel_args

MAC = "52:54:00:12:34:01"


def spec(**overrides) -> MachineSpec:
    values = {"name": "vm-a", "kernel": Path("/k/bzImage"), "image": Path("/img/root.ext4"), **overrides}
    return MachineSpec(**values)


def argv_of(machine: MachineSpec) -> list[str]:
    return build_argv(machine, RunFiles(Path("/run/prism/vm-a")))


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def device_with(argv: list[str], prefix: str) -> dict[str, str]:
    """The key=value pairs of the one -device/-netdev value starting with prefix."""
    values = [v for opt in ("-device", "-netdev") for v in option_values(argv, opt) if v.startswith(prefix)]
    assert len(values) == 1, values
    return dict(part.partition("=")[::2] for part in values[0].split(",")[1:])


def test_tcg_uses_multithreaded_tcg():
    argv = argv_of(spec(accel="tcg"))
    assert option_values(argv, "-accel") == ["tcg,thread=multi"]


def test_kvm_uses_kvm_and_host_cpu():
    argv = argv_of(spec(accel="kvm"))
    assert option_values(argv, "-accel") == ["kvm"]
    assert option_values(argv, "-cpu") == ["host"]


def test_starts_paused_for_qmp():
    assert "-S" in argv_of(spec())


def test_vcpus_and_memory():
    argv = argv_of(spec(vcpus=4, memory_mib=1024))
    assert option_values(argv, "-smp") == ["4"]
    assert option_values(argv, "-m") == ["1024"]


def test_root_drive_is_read_only_raw():
    drive = option_values(argv_of(spec()), "-drive")
    assert len(drive) == 1
    fields = drive[0].split(",")
    assert "file=/img/root.ext4" in fields
    assert "readonly=on" in fields
    assert "format=raw" in fields


def test_virtio_net_device_is_multiqueue_with_vectors_speed_and_no_rom():
    argv = argv_of(spec(nics=(NicSpec(tap="tap-a0", mac=MAC, queues=4, speed_mbps=25_000),)))
    device = device_with(argv, "virtio-net-pci")
    assert device["netdev"] == "net0"
    assert device["mac"] == MAC
    assert device["mq"] == "on"
    assert device["vectors"] == str(2 * 4 + 2)
    assert device["speed"] == "25000"
    assert device["duplex"] == "full"
    assert device["rx_queue_size"] == "256"
    assert device["romfile"] == ""


def test_tap_netdev_has_queues_and_vhost_off_under_tcg():
    argv = argv_of(spec(nics=(NicSpec(tap="tap-a0", mac=MAC, queues=4),)))
    netdev = device_with(argv, "tap")
    assert netdev["id"] == "net0"
    assert netdev["ifname"] == "tap-a0"
    assert netdev["queues"] == "4"
    assert netdev["vhost"] == "off"
    assert netdev["script"] == netdev["downscript"] == "no"


def test_tap_netdev_has_vhost_on_when_asked_under_kvm():
    argv = argv_of(spec(accel="kvm", nics=(NicSpec(tap="tap-a0", mac=MAC, queues=2, vhost=True),)))
    assert device_with(argv, "tap")["vhost"] == "on"


def test_each_nic_gets_its_own_netdev_id():
    nics = (NicSpec(tap="tap-a0", mac=MAC), NicSpec(tap="tap-a1", mac="52:54:00:12:34:02"))
    argv = argv_of(spec(nics=nics))
    assert [v.split(",")[1] for v in option_values(argv, "-netdev")] == ["id=net0", "id=net1"]
    assert device_with(argv, "virtio-net-pci,netdev=net1")["mac"] == "52:54:00:12:34:02"


def test_no_nics_means_no_network_devices():
    argv = argv_of(spec())
    assert option_values(argv, "-netdev") == []
    assert not any(v.startswith("virtio-net-pci") for v in option_values(argv, "-device"))


def test_without_netns_qemu_is_argv0():
    assert argv_of(spec())[0] == "qemu-system-x86_64"


def test_netns_wraps_argv_in_nsenter():
    argv = argv_of(spec(netns="prism-r1"))
    assert argv[:4] == ["nsenter", "--net=/run/netns/prism-r1", "--", "qemu-system-x86_64"]
    assert argv[4:] == argv_of(spec())[1:]


def test_run_files_are_wired_to_their_chardevs():
    argv = argv_of(spec())
    chardevs = option_values(argv, "-chardev")
    assert "file,id=console,path=/run/prism/vm-a/console.log" in chardevs
    assert "socket,id=qmp,path=/run/prism/vm-a/qmp.sock,server=on,wait=off" in chardevs
    assert "socket,id=qga,path=/run/prism/vm-a/qga.sock,server=on,wait=off" in chardevs
    assert option_values(argv, "-pidfile") == ["/run/prism/vm-a/qemu.pid"]


def test_kernel_cmdline_has_serial_console_and_appended_items():
    machine = spec(append=("prism.debug=1", "quiet"))
    cmdline = machine.kernel_cmdline().split()
    assert "console=ttyS0" in cmdline
    assert cmdline[-2:] == ["prism.debug=1", "quiet"]
    assert "prism.hostname=vm-a" in cmdline
    assert option_values(argv_of(machine), "-append") == [machine.kernel_cmdline()]


@pytest.mark.parametrize("name", ["VM", "1vm", "vm_a", "vm a", "", "v" * 32, "vm\n"])
def test_bad_machine_name_is_rejected_naming_it(name):
    with pytest.raises(ConfigError, match=re.escape(f"machine name {name!r}:")):
        spec(name=name)


@pytest.mark.parametrize("queues", [0, 65])
def test_queue_count_out_of_range_is_rejected_naming_the_nic(queues):
    with pytest.raises(ConfigError, match=f"NIC tap-a0: queues {queues} must be between 1 and 64"):
        NicSpec(tap="tap-a0", mac=MAC, queues=queues)


@pytest.mark.parametrize("mac", ["52:54:00:12:34", "52-54-00-12-34-01", "52:54:00:12:34:0g", "52:54:00:12:34:01\n"])
def test_bad_mac_is_rejected_naming_the_nic(mac):
    with pytest.raises(ConfigError, match="NIC tap-a0: MAC .* is not of the form"):
        NicSpec(tap="tap-a0", mac=mac)


def test_vhost_under_tcg_is_rejected_naming_machine_and_nic():
    with pytest.raises(ConfigError, match="machine vm-a: vhost on NIC tap-a0 needs accel kvm"):
        spec(accel="tcg", nics=(NicSpec(tap="tap-a0", mac=MAC, vhost=True),))


def test_memory_below_128_mib_is_rejected_naming_the_machine():
    with pytest.raises(ConfigError, match="machine vm-a: memory 127 MiB is below 128 MiB"):
        spec(memory_mib=127)


def test_128_mib_is_enough():
    assert spec(memory_mib=128).memory_mib == 128


def test_unknown_accel_is_rejected_naming_the_machine():
    with pytest.raises(ConfigError, match="machine vm-a: accel 'hvf' must be one of kvm, tcg"):
        spec(accel="hvf")


@pytest.mark.parametrize("vcpus", [0, 65])
def test_vcpus_out_of_range_is_rejected_naming_the_machine(vcpus):
    with pytest.raises(ConfigError, match=f"machine vm-a: vcpus {vcpus} must be between 1 and 64"):
        spec(vcpus=vcpus)



def test_the_rx_ring_size_is_checked():
    with pytest.raises(ConfigError, match="rx_queue_size 300 must be 256, 512 or 1024"):
        NicSpec(tap="pt0", mac=MAC, rx_queue_size=300)


@pytest.mark.parametrize(("value", "expected"), [
    ("panic=5 sysrq_always_enabled", ("panic=5", "sysrq_always_enabled")),
    (["panic=5", "quiet"], ("panic=5", "quiet")),
    ('dyndbg="file dev.c +p"', ("dyndbg=file dev.c +p",)),
    ((), ()),
])
def test_kernel_args_take_a_string_or_a_list(value, expected):
    assert kernel_args(value, "here") == expected


@pytest.mark.parametrize("value", [5, ["a", 1], {"a": 1}, ["a\nb"], ["ok", ""], 'unclosed "quote'])
def test_kernel_args_reject_what_is_not_arguments(value):
    with pytest.raises(ConfigError, match="^here: ") as info:
        kernel_args(value, "here")
    assert "\n" not in str(info.value)


def test_a_string_append_never_becomes_characters():
    spec = MachineSpec(name="vm", kernel=Path("/k"), image=Path("/i"), append=kernel_args("panic=5 quiet", "t"))
    assert spec.kernel_cmdline().endswith(" panic=5 quiet")
    with pytest.raises(ConfigError, match="append must be a tuple"):
        MachineSpec(name="vm", kernel=Path("/k"), image=Path("/i"), append="panic=5")
