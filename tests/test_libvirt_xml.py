"""testbed.vm.libvirt_xml: the domain XML, checked as structure (no libvirtd needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from testbed.vm.libvirt_xml import AGENT_CHANNEL, QEMU_NS, domain_element, domain_xml
from testbed.vm.qemu_cmd import MachineSpec, NicSpec

MAC = "52:54:00:12:34:01"
Q = {"qemu": QEMU_NS}


def spec(**overrides) -> MachineSpec:
    values = {"name": "vm-a", "kernel": Path("/k/bzImage"), "image": Path("/img/root.ext4"), **overrides}
    return MachineSpec(**values)


def dom(machine: MachineSpec | None = None, secmodels=("dac",)) -> ET.Element:
    # through the text, so what libvirt would parse is what is checked
    return ET.fromstring(domain_xml(machine or spec(), "prism-run1-vm-a", secmodels))


def one(root: ET.Element, path: str) -> ET.Element:
    found = root.findall(path, Q)
    assert len(found) == 1, f"{path}: {len(found)} elements"
    return found[0]


def test_tcg_is_domain_type_qemu_with_the_maximum_cpu():
    root = dom(spec(accel="tcg"))
    assert root.get("type") == "qemu"
    assert one(root, "cpu").get("mode") == "maximum"


def test_kvm_is_domain_type_kvm_with_the_host_cpu():
    root = dom(spec(accel="kvm"))
    assert root.get("type") == "kvm"
    assert one(root, "cpu").get("mode") == "host-passthrough"


def test_name_vcpus_and_memory():
    root = dom(spec(vcpus=4, memory_mib=1024))
    assert one(root, "name").text == "prism-run1-vm-a"
    assert one(root, "vcpu").text == "4"
    memory = one(root, "memory")
    assert (memory.text, memory.get("unit")) == ("1024", "MiB")


def test_direct_kernel_boot_with_the_same_command_line_as_the_qemu_backend():
    machine = spec(append=("prism.extra=1",))
    root = dom(machine)
    os_type = one(root, "os/type")
    assert (os_type.text, os_type.get("machine"), os_type.get("arch")) == ("hvm", "pc", "x86_64")
    assert one(root, "os/kernel").text == "/k/bzImage"
    assert one(root, "os/cmdline").text == machine.kernel_cmdline()
    assert root.find("os/initrd") is None
    assert root.find("features/acpi") is not None  # else libvirt passes -no-acpi


def test_the_guest_never_reboots():
    root = dom()
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        assert one(root, event).text == "destroy"


def test_root_image_is_a_read_only_raw_virtio_disk():
    disk = one(dom(), "devices/disk")
    assert disk.get("device") == "disk"
    assert one(disk, "source").get("file") == "/img/root.ext4"
    assert one(disk, "driver").get("type") == "raw"
    assert one(disk, "target").attrib == {"dev": "vda", "bus": "virtio"}
    assert disk.find("readonly") is not None


def test_nic_is_virtio_on_the_testbeds_own_tap_with_queues():
    root = dom(spec(nics=(NicSpec(tap="pt1234abcd0", mac=MAC, queues=4, speed_mbps=25_000),)))
    iface = one(root, "devices/interface")
    assert iface.get("type") == "ethernet"
    assert one(iface, "target").attrib == {"dev": "pt1234abcd0", "managed": "no"}  # libvirt makes no tap
    assert one(iface, "mac").get("address") == MAC
    assert one(iface, "model").get("type") == "virtio"
    assert one(iface, "driver").attrib == {"name": "qemu", "queues": "4", "rx_queue_size": "256"}
    assert one(iface, "rom").get("enabled") == "no"


def test_vhost_driver_only_when_the_nic_asks_for_it():
    root = dom(spec(accel="kvm", nics=(NicSpec(tap="pt1234abcd0", mac=MAC, queues=2, vhost=True),)))
    assert one(root, "devices/interface/driver").get("name") == "vhost"


def test_speed_duplex_vectors_and_mq_are_set_on_the_nic_through_qemu_override():
    root = dom(spec(nics=(NicSpec(tap="pt1234abcd0", mac=MAC, queues=4, speed_mbps=25_000),
                          NicSpec(tap="pt1234abcd1", mac="52:54:00:12:34:02", queues=1))))
    aliases = [a.get("name") for a in root.findall("devices/interface/alias")]
    assert aliases == ["ua-net0", "ua-net1"]
    devices = root.findall("qemu:override/qemu:device", Q)
    assert [d.get("alias") for d in devices] == aliases
    props = [{p.get("name"): (p.get("type"), p.get("value")) for p in d.findall("qemu:frontend/qemu:property", Q)}
             for d in devices]
    assert props[0] == {"mq": ("bool", "true"), "vectors": ("unsigned", "10"), "speed": ("signed", "25000"),
                        "duplex": ("string", "full")}
    assert props[1]["vectors"] == ("unsigned", "4") and props[1]["speed"] == ("signed", "100000")


def test_no_override_without_nics():
    assert dom().find("qemu:override", Q) is None


def test_agent_channel_keeps_the_name_the_guest_looks_for():
    channel = one(dom(), "devices/channel")
    assert channel.get("type") == "unix"
    assert one(channel, "source").attrib == {"mode": "bind"}  # libvirt picks the path and connects itself
    assert one(channel, "target").attrib == {"type": "virtio", "name": AGENT_CHANNEL}
    assert AGENT_CHANNEL in Path(__file__).parents[1].joinpath(
        "images/rootfs/usr/lib/prism-testbed/guest-agent").read_text()


def test_serial_console_is_a_pty_that_libvirt_streams():
    root = dom()
    assert one(root, "devices/serial").get("type") == "pty"
    assert one(root, "devices/console/target").attrib == {"type": "serial", "port": "0"}


def test_no_usb_no_balloon():
    root = dom()
    assert one(root, "devices/controller[@type='usb']").get("model") == "none"
    assert one(root, "devices/memballoon").get("model") == "none"


def test_dac_runs_qemu_as_root_without_relabelling():
    label = one(dom(secmodels=("none", "dac")), "seclabel")
    assert label.attrib == {"type": "static", "model": "dac", "relabel": "no"}
    assert one(label, "label").text == "+0:+0"


def test_mac_security_drivers_are_turned_off_per_domain():
    labels = {s.get("model"): s.get("type") for s in dom(secmodels=("apparmor", "dac")).findall("seclabel")}
    assert labels == {"apparmor": "none", "dac": "static"}


def test_values_are_escaped_not_templated():
    root = dom(spec(append=("prism.note=<a&b>",)))
    assert one(root, "os/cmdline").text.endswith("prism.note=<a&b>")


def test_element_and_text_agree():
    machine = spec(nics=(NicSpec(tap="pt1234abcd0", mac=MAC, queues=2),))
    element = domain_element(machine, "prism-run1-vm-a")
    ET.indent(element)
    assert ET.tostring(element, encoding="unicode") == domain_xml(machine, "prism-run1-vm-a")
