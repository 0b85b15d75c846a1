"""The two-vm topology through the libvirt backend (domain type qemu under
TCG): the same overlay reached the same ways, NICs as the direct backend
makes them, and nothing left behind on the host or in libvirt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_topologies import ONE_VM, netns_names  # pytest puts cases/ on sys.path

from testbed import Deployment
from testbed.core.errors import MachineError
from testbed.net.backend import Backend
from testbed.net.fabric import HOST_TAP_PREFIX, NETNS_PREFIX, reap_stale
from testbed.vm import libvirt_machine

pytestmark = pytest.mark.vm

TWO_VM = pytest.mark.parametrize("deployment", ["two-vm"], indirect=True)


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Backend:
    """This module's VMs are libvirt domains, whatever --backend says."""
    uri = request.config.getoption("libvirt_uri")
    usable, why = libvirt_machine.probe(uri)  # the doctor's check: a reason once, not a boot timeout per case
    if not usable:
        pytest.fail(f"libvirt backend: {why}", pytrace=False)
    return Backend("libvirt", uri)


def domains(uri: str, prefix: str) -> list[str]:
    conn = libvirt_machine.connect(uri)
    try:
        return [d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)]
    finally:
        conn.close()


def host_links(prefix: str) -> list[str]:
    """Interfaces in the host's own namespace whose name starts with prefix."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [line.split(": ", 2)[1].split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith(prefix)]


@TWO_VM
def test_vms_are_transient_tcg_libvirt_domains(deployment, backend):
    conn = libvirt_machine.connect(backend.libvirt_uri)
    try:
        for vm in deployment.machines.values():
            domain = conn.lookupByName(vm.domain_name)
            assert not domain.isPersistent()
            assert ET.fromstring(domain.XMLDesc()).get("type") == ("kvm" if deployment.accel.accel == "kvm" else "qemu")
    finally:
        conn.close()


@TWO_VM
def test_containers_reach_each_other_across_vms(deployment):
    for src, dst in (("c1", "s1"), ("s2", "c2")):
        a, b = deployment.container(src), deployment.container(dst)
        result = a.exec(f"ping -c 1 -W 5 {b.address}", timeout=20)
        assert result.ok, f"{src} ({a.machine.name}) -> {dst} ({b.machine.name}):\n{result.stdout}"


@TWO_VM
def test_host_traffic_port_reaches_containers(deployment):
    for handle in deployment.containers.values():
        result = deployment.host_run(["ping", "-c", "2", "-W", "5", handle.address])
        assert result.ok, f"host -> {handle.name}:\n{result.stdout}{result.stderr}"


@TWO_VM
def test_nics_have_the_topologys_queues_and_speed(deployment):
    vm = deployment.vm("server")
    assert "Combined:\t2" in vm.run("ethtool -l eth0", check=True).stdout.split("Current hardware settings")[1]
    settings = vm.run("ethtool eth0", check=True).stdout
    assert "Speed: 100000Mb/s" in settings and "Duplex: Full" in settings


@TWO_VM
def test_taps_were_moved_into_the_run_namespace(deployment):
    assert not host_links(f"{HOST_TAP_PREFIX}{deployment.run_id}")  # none left in the host's namespace
    out = deployment.host_run(["ip", "-o", "link", "show", "master", "br0"]).stdout
    on_bridge = [line.split(": ", 2)[1].split("@")[0] for line in out.splitlines()]
    assert sorted(n for n in on_bridge if n.startswith(HOST_TAP_PREFIX)) == sorted(
        nic.tap for vm in deployment.machines.values() for nic in vm.spec.nics)


def test_teardown_leaves_no_domain_netns_or_tap(kernel, guest_image, accel, backend):
    with Deployment(ONE_VM, kernel, guest_image, accel, backend=backend) as deployment:
        run_id = deployment.run_id
        assert domains(backend.libvirt_uri, f"prism-{run_id}-") == [f"prism-{run_id}-solo"]
        assert deployment.container("k1").exec("echo up", check=True).stdout.strip() == "up"
    assert domains(backend.libvirt_uri, f"prism-{run_id}-") == []
    assert f"{NETNS_PREFIX}{run_id}" not in netns_names()
    assert host_links(f"{HOST_TAP_PREFIX}{run_id}") == []


def test_a_domain_libvirt_refuses_is_one_line_and_leaves_nothing(guest_image, accel, backend):
    missing = SimpleNamespace(bzimage=Path("/nonexistent/prism-testbed/bzImage"))
    deployment = Deployment(ONE_VM, missing, guest_image, accel, backend=backend)
    with pytest.raises(MachineError) as info:
        deployment.__enter__()
    message = str(info.value)
    assert message.startswith("solo: libvirt could not start domain") and "\n" not in message, message
    assert "/nonexistent/prism-testbed/bzImage" in message
    assert f"{NETNS_PREFIX}{deployment.run_id}" not in netns_names()
    assert host_links(f"{HOST_TAP_PREFIX}{deployment.run_id}") == []
    assert domains(backend.libvirt_uri, f"prism-{deployment.run_id}-") == []


KILLED_RUN = """
import sys, time
from pathlib import Path
from testbed.vm.accel import AccelChoice
from testbed.net.backend import Backend
from testbed import Deployment
from testbed.build.image import build_image, load_spec
from testbed.build.kernel import prebuilt
sys.path.insert(0, {cases!r})
from test_topologies import ONE_VM
d = Deployment(ONE_VM, prebuilt(Path({bzimage!r})), build_image(load_spec()), AccelChoice("tcg", False, "test"),
               backend=Backend("libvirt", {uri!r}))
d.up()
print("READY", d.run_id, flush=True)
time.sleep(600)
"""


def test_a_killed_run_leaves_no_domain_and_the_reaper_takes_the_rest(kernel, backend):
    script = KILLED_RUN.format(cases=str(Path(__file__).parent), bzimage=str(kernel.bzimage), uri=backend.libvirt_uri)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"the doomed run did not come up: {line!r}"
        run_id = line.split()[1]
        os.killpg(proc.pid, signal.SIGKILL)  # no teardown runs
        proc.wait()
        deadline = time.monotonic() + 20
        while domains(backend.libvirt_uri, f"prism-{run_id}-") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert domains(backend.libvirt_uri, f"prism-{run_id}-") == [], "AUTODESTROY did not end the domain"
        assert f"{NETNS_PREFIX}{run_id}" in netns_names()
        # a tap still in the host's namespace, as a run killed between making and moving it leaves one
        subprocess.run(["ip", "tuntap", "add", "dev", f"{HOST_TAP_PREFIX}{run_id}9", "mode", "tap"], check=True)
        reaped = reap_stale()
        assert any(run_id in r and f"{HOST_TAP_PREFIX}{run_id}9" in r for r in reaped), reaped
        assert f"{NETNS_PREFIX}{run_id}" not in netns_names()
        assert host_links(f"{HOST_TAP_PREFIX}{run_id}") == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reap_stale()
