"""The libvirt domain XML for one MachineSpec (pure, like qemu_cmd).

The domain is the same machine the direct backend starts: the pc machine,
direct kernel boot with the same command line, the shared root image as a
read-only virtio disk, virtio-net NICs with mq, vectors 2N+2, a link speed,
full duplex and no option ROM, each on a pre-made multiqueue tap
(`<target managed='no'>`), and the guest agent's virtio-serial port under the
name the guest's init looks for. libvirt has no element for a NIC's link
speed, duplex or MSI-X vectors, so those are set with `<qemu:override>`
on the NIC's alias, which sets -device properties and nothing else.

Built with xml.etree, so every value is escaped and tests can check the
structure rather than text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .qemu_cmd import MachineSpec

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
AGENT_CHANNEL = "org.qemu.guest_agent.0"  # images/rootfs/usr/lib/prism-testbed/guest-agent looks for it

ET.register_namespace("qemu", QEMU_NS)


def _q(tag: str) -> str:
    return f"{{{QEMU_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def nic_alias(index: int) -> str:
    """A user alias ('ua-' is libvirt's prefix for them) that <qemu:override> can name."""
    return f"ua-net{index}"


def domain_element(spec: MachineSpec, domain_name: str, secmodels: Iterable[str] = ("dac",)) -> ET.Element:
    """The <domain> for spec; secmodels are the host's security drivers (from its capabilities)."""
    kvm = spec.accel == "kvm"
    domain = ET.Element("domain", {"type": "kvm" if kvm else "qemu"})
    _sub(domain, "name", domain_name)
    _sub(domain, "memory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(spec.vcpus))
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_, "kernel", str(spec.kernel))
    _sub(os_, "cmdline", spec.kernel_cmdline())
    features = _sub(domain, "features")
    _sub(features, "acpi")  # without it libvirt passes -no-acpi; the direct backend keeps ACPI
    _sub(features, "apic")
    _sub(domain, "cpu", mode="host-passthrough" if kvm else "maximum")  # -cpu host / -cpu max
    _sub(domain, "clock", offset="utc")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(domain, event, "destroy")  # -no-reboot: a panic (panic=-1) ends the domain

    devices = _sub(domain, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="raw")
    _sub(disk, "source", file=str(spec.image))
    _sub(disk, "target", dev="vda", bus="virtio")
    _sub(disk, "readonly")  # one cached image shared by every VM

    for index, nic in enumerate(spec.nics):
        iface = _sub(devices, "interface", type="ethernet")
        _sub(iface, "mac", address=nic.mac)
        _sub(iface, "target", dev=nic.tap, managed="no")  # the testbed made the tap
        _sub(iface, "model", type="virtio")
        _sub(iface, "driver", name="vhost" if nic.vhost else "qemu", queues=str(nic.queues),
             rx_queue_size=str(nic.rx_queue_size))
        _sub(iface, "rom", enabled="no")  # romfile=
        _sub(iface, "alias", name=nic_alias(index))

    # The console is read through libvirt (virDomainOpenConsole), so it
    # needs no path on the libvirt host and works over a remote URI too.
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")

    # libvirt connects to the agent's socket itself (path chosen by libvirt)
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "source", mode="bind")
    _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)

    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")

    # QEMU runs as root and nothing is relabelled: the kernel and image stay
    # in root's cache, shared read-only, and no host configuration changes.
    for model in secmodels:
        if model == "dac":
            label = _sub(domain, "seclabel", type="static", model="dac", relabel="no")
            _sub(label, "label", "+0:+0")
        elif model != "none":
            _sub(domain, "seclabel", type="none", model=model)

    if spec.nics:
        override = _sub(domain, _q("override"))
        for index, nic in enumerate(spec.nics):
            device = _sub(override, _q("device"), alias=nic_alias(index))
            frontend = _sub(device, _q("frontend"))
            for name, kind, value in (("mq", "bool", "true"), ("vectors", "unsigned", str(nic.vectors)),
                                      ("speed", "signed", str(nic.speed_mbps)), ("duplex", "string", "full")):
                _sub(frontend, _q("property"), name=name, type=kind, value=value)
    return domain


def domain_xml(spec: MachineSpec, domain_name: str, secmodels: Iterable[str] = ("dac",)) -> str:
    element = domain_element(spec, domain_name, secmodels)
    ET.indent(element)
    return ET.tostring(element, encoding="unicode")
