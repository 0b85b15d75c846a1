"""The plugin's command-line options and markers (testbed.harness.pytest_plugin re-exports the hook)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..core import paths
from ..core.errors import ConfigError
from ..net.backend import BACKENDS
from ..vm.libvirt_machine import DEFAULT_URI

MACHINE_MARK_KEYS = {"vcpus", "memory", "queues", "speed", "append", "boot_timeout"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("prism-testbed")
    group.addoption("--kernel", action="append", default=None, metavar="prism|vanilla|PATH",
                    help="kernel under test: a variant from kernel-config/ or a bzImage path; "
                         "repeat to run every case on each (default: prism)")
    group.addoption("--debug-kernel", action="append", default=[], metavar="prism-debug|PATH",
                    help="also run the cases marked debug_kernel (the PRISM paths, KUnit, boot) on this "
                         "kernel, e.g. the lockdep variant; repeatable")
    group.addoption("--kernel-src", type=Path, default=None, metavar="PATH",
                    help="build this local kernel tree in place (incrementally) and test it")
    group.addoption("--kernel-source", default=None, metavar="NAME",
                    help="which source from kernel-config/kernel.toml to build variants from")
    group.addoption("--accel", default="auto", choices=("auto", "kvm", "tcg"),
                    help="accelerator: auto probes KVM by booting the kernel, falls back to TCG")
    group.addoption("--keep", action="store_true",
                    help="leave VMs of failed tests running and print how to reach them")
    group.addoption("--backend", default="qemu", choices=BACKENDS,
                    help="who starts the VMs: qemu (directly, default) or libvirt")
    group.addoption("--libvirt-uri", default=DEFAULT_URI, metavar="URI",
                    help=f"libvirtd for --backend libvirt, e.g. qemu+ssh://root@host/system (default: {DEFAULT_URI})")
    group.addoption("--results", type=Path, default=Path("results"), metavar="DIR",
                    help="where run records and console logs go (default: ./results)")


def configure(config: pytest.Config) -> None:
    """The plugin's markers; a missing data root is a usage error in one line, before any case runs."""
    config.addinivalue_line("markers", "machine(vcpus=2, memory=512, queues=2, speed=100000, append=(), "
                                       "boot_timeout=90): what the `machine` fixture boots; append: extra "
                                       "kernel arguments, a string (split like a shell) or a list")
    config.addinivalue_line("markers", "debug_kernel: cases that also run on every --debug-kernel (a lock or "
                                       "context bug is a splat there, which fails the case)")
    config.addinivalue_line("markers", "kvm_only: checks that need the run to be under KVM; "
                                       "skipped unless --accel kvm")
    try:
        paths.check_data_root()
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
