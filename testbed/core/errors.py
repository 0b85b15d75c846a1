"""Errors the testbed raises on purpose.

Every one carries a single line that names the input and what is wrong with
it, so the CLI and the pytest plugin can print it without a traceback.
"""

from __future__ import annotations


class TestbedError(Exception):
    """Base for every error that is the user's input or the host, not a bug."""

    __test__ = False  # not a pytest test class, despite the name


class ConfigError(TestbedError):
    """A data file (kernel-config/, images/, a topology) is malformed."""


class CacheError(TestbedError):
    """The cache cannot be written (read-only, full, no permission)."""


class KernelBuildError(TestbedError):
    """A kernel could not be configured, patched or built."""


class ImageBuildError(TestbedError):
    """A guest image could not be built."""


class MachineError(TestbedError):
    """A QEMU process failed to start, or died, or would not answer."""


class CommandError(TestbedError):
    """A command (on the host, in a netns, a guest or a container) failed, or could not be run."""


class CommandTimeout(CommandError):
    """A command did not finish by its deadline."""


class GuestCommandError(CommandError):
    """A command run in the guest through the guest agent failed."""


class GuestCommandTimeout(GuestCommandError, CommandTimeout):
    """A command run in the guest did not finish in time."""


class FabricError(TestbedError):
    """The host-side network namespace, bridge or taps could not be set up."""


class VerdictError(TestbedError):
    """Probe records or latency samples cannot give a verdict: empty, inconsistent, out of range."""


class RunError(TestbedError):
    """An `up` deployment is missing, ambiguous, failed to come up, or does not answer."""
