"""--libvirt-uri qemu+ssh://…: a domain on another machine's libvirtd.

Here the other machine is this one, reached through an sshd the test
starts on a free loopback port with a host key and an authorized key made
in a temporary directory; so the path is the real one (ssh, the remote
libvirtd, the console stream and the agent over the connection), and the
kernel and image paths exist on the "remote" side, as they must.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testbed.net.fabric import new_run_id, runtime_dir
from testbed.vm import libvirt_machine
from testbed.vm.libvirt_machine import LibvirtMachine
from testbed.vm.qemu_cmd import MachineSpec

pytestmark = pytest.mark.vm

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def known_hosts_restored():
    """The ssh transport (plain ssh) records the host key in root's known_hosts: put it back as it was."""
    path = Path("~/.ssh/known_hosts").expanduser()
    had_dir, before = path.parent.exists(), path.read_bytes() if path.exists() else None
    yield
    if before is not None:
        path.write_bytes(before)
    elif had_dir:
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture
def sshd(tmp_path: Path, known_hosts_restored):
    """An sshd on 127.0.0.1:PORT that lets in one key made here; stopped (and checked gone) after."""
    if not Path(SSHD).exists():
        pytest.fail("sshd not found: run tools/install-host-deps (Debian package openssh-server)", pytrace=False)
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
    (tmp_path / "authorized_keys").write_bytes((tmp_path / "client.pub").read_bytes())
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {tmp_path / 'host'}",
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no",  # the keys live under pytest's tmp dir, whatever its modes
        f"PidFile {tmp_path / 'sshd.pid'}", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    log = open(tmp_path / "sshd.log", "wb")  # closed in the finally below
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not listen on {port}: {(tmp_path / 'sshd.log').read_text()}", pytrace=False)
            time.sleep(0.05)
        yield f"qemu+ssh://root@127.0.0.1:{port}/system?keyfile={tmp_path / 'client'}&no_verify=1&no_tty=1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode is not None


def test_a_domain_over_qemu_ssh_boots_answers_and_is_gone_after(sshd, kernel, guest_image, accel):
    uri = sshd
    conn = libvirt_machine.connect(uri)
    try:
        assert conn.getURI().startswith("qemu+ssh://")
        assert libvirt_machine.same_host(conn)
    finally:
        conn.close()
    run_id = new_run_id()
    spec = MachineSpec(name="remote", kernel=kernel.bzimage, image=guest_image.root, vcpus=1, memory_mib=384,
                       accel=accel.accel)  # no NICs: the fabric is built on this machine, not the libvirt host
    name = f"prism-{run_id}-remote"
    run_dir = runtime_dir(run_id) / "remote"
    try:
        with LibvirtMachine(spec, run_dir, boot_timeout=120, uri=uri, domain_name=name) as vm:
            assert vm.run("cat /proc/sys/kernel/hostname", check=True).stdout.strip() == "remote"
            assert vm.run("uname -r", check=True).stdout.strip() == kernel.release
            vm.run("echo prism-remote-marker > /dev/console", check=True)  # the console streams over ssh
            deadline = time.monotonic() + 10
            while "prism-remote-marker" not in vm.files.console.read_text(errors="replace"):
                assert time.monotonic() < deadline, vm.console.tail(5)
                time.sleep(0.1)
            assert vm.splats() == []
        local = libvirt_machine.connect("qemu:///system")
        try:
            assert name not in [d.name() for d in local.listAllDomains()]
        finally:
            local.close()
    finally:
        shutil.rmtree(runtime_dir(run_id), ignore_errors=True)
