"""doctor's checks, with the host's answers mocked where they would vary."""

from __future__ import annotations

import collections

import pytest

from testbed import cli
from testbed.harness import doctor
from testbed.harness.doctor import Check


@pytest.fixture
def kvm_device(monkeypatch):
    """Pretend /dev/kvm exists with the given access."""
    def setup(exists: bool = True, rw: bool = True):
        real_exists, real_access = doctor.os.path.exists, doctor.os.access
        monkeypatch.setattr(doctor.os.path, "exists", lambda p: exists if p == "/dev/kvm" else real_exists(p))
        monkeypatch.setattr(doctor.os, "access", lambda p, m: rw if p == "/dev/kvm" else real_access(p, m))
    return setup


def test_kvm_missing_is_a_warning_not_a_failure(kvm_device):
    kvm_device(exists=False)
    check = doctor.check_kvm()
    assert (check.status, check.required) == ("warn", False) and "no /dev/kvm" in check.detail


def test_kvm_without_permission_says_so(kvm_device):
    kvm_device(rw=False)
    assert "not readable and writable" in doctor.check_kvm().detail


def test_kvm_is_judged_by_the_probe_not_the_device(kvm_device, monkeypatch, tmp_path):
    kvm_device()
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"x")
    monkeypatch.setattr(doctor, "_probe_kernel", lambda: kernel)
    bad = doctor.check_kvm(probe=lambda k: (False, "a KVM guest failed: emulation failure"))
    assert bad.status == "warn" and "emulation failure" in bad.detail and "TCG" in bad.detail
    good = doctor.check_kvm(probe=lambda k: (True, "a KVM guest booted to its root mount in 0.4s"))
    assert good.status == "ok" and "0.4s" in good.detail


def test_kvm_without_a_kernel_to_probe_with(kvm_device, monkeypatch):
    kvm_device()
    monkeypatch.setattr(doctor, "_probe_kernel", lambda: None)
    assert "probed on the first run" in doctor.check_kvm(probe=lambda k: pytest.fail("no probe")).detail


@pytest.mark.parametrize(("free_gib", "status"), [(1, "fail"), (5, "warn"), (50, "ok")])
def test_disk_space_thresholds(monkeypatch, tmp_path, free_gib, status):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: usage(0, 0, free_gib * doctor.GIB))
    assert doctor.check_disk().status == status


def test_missing_qemu_fails_and_is_required(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    monkeypatch.setattr("testbed.vm.qemu_cmd.shutil.which", lambda name: None)
    check = doctor.check_qemu()
    assert check.blocking and "qemu-system-x86_64 not found" in check.detail


def test_ccache_missing_is_a_warning(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor.check_ccache().status == "warn"


def test_cache_size_counts_hard_links_once(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernels = tmp_path / "prism-testbed" / "kernels"
    kernels.mkdir(parents=True)
    (kernels / "a").write_bytes(b"x" * 1_000_000)
    (kernels / "b").hardlink_to(kernels / "a")
    assert doctor.tree_size(kernels) < 1_100_000
    assert "GiB in" in doctor.check_cache_size().detail


def test_a_crashing_check_is_reported_not_raised():
    def check_broken() -> Check:
        raise RuntimeError("boom")
    (result,) = doctor.run_checks((check_broken,))
    assert result.status == "fail" and "boom" in result.detail and result.name == "broken"


@pytest.mark.parametrize(("checks", "code"), [
    ([Check("a", "ok", ""), Check("b", "warn", "")], 0),
    ([Check("a", "fail", "optional thing")], 0),
    ([Check("a", "ok", ""), Check("tun", "fail", "missing", required=True)], 1),
])
def test_doctor_exits_non_zero_only_when_something_required_fails(monkeypatch, capsys, checks, code):
    monkeypatch.setattr(doctor, "run_checks", lambda: checks)
    assert cli.main(["doctor"]) == code
    out = capsys.readouterr().err
    assert "prism-testbed doctor" in out


def test_the_real_host_checks_run():
    """On this host (root): every check answers with a known status."""
    results = doctor.run_checks((doctor.check_tun, doctor.check_vhost, doctor.check_netns))
    assert all(r.status in ("ok", "warn", "fail") and r.detail for r in results)


def test_unrecorded_leftovers_are_named_and_left_alone(monkeypatch):
    from testbed.net import fabric
    monkeypatch.setattr(fabric, "unrecorded", lambda: ["prism-userlab"])
    check = doctor.check_unrecorded()
    assert check.status == "warn" and "prism-userlab" in check.detail and "left alone" in check.detail
    monkeypatch.setattr(fabric, "unrecorded", lambda: [])
    assert doctor.check_unrecorded().status == "ok"


def test_a_libvirt_backend_that_cannot_run_says_why_once_as_a_warning():
    check = doctor.check_libvirt(lambda: (False, "libvirt: getDomainCapabilities did not return within 30s"))
    assert check.status == "warn" and not check.required
    assert check.detail == ("--backend libvirt cannot run here: "
                            "libvirt: getDomainCapabilities did not return within 30s")


def test_a_working_libvirt_backend_is_ok():
    check = doctor.check_libvirt(lambda: (True, "libvirt 9.0.0 at qemu:///system: TCG"))
    assert check.status == "ok" and check.detail.startswith("libvirt 9.0.0")
