"""PRISM's sysctls as the experiment sets them, derived from a mix.

The mix says which flows are priority (their ports and DSCP); the kernel's
classifier is told exactly that, and nothing else, so a mix runs unchanged
on every kernel. The names are the series' interface
(kernel-config/patches/prism/): net.core.prism_*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import TestbedError
from .mix import Mix

if TYPE_CHECKING:
    from ..net.deployment import Deployment

MODES = {"off": 0, "pseudo-sync": 1, "sync": 2}
PROBE = "/proc/sys/net/core/prism_mode"
# net.core.prism_features: what PRISM does with a marked packet, one bit each (series 0015), so
# one part can be turned off (`pseudo-sync+no-cell`) and its share of the effect measured
FEATURES = {"backlog": 1, "poll": 2, "cell": 4, "local": 8}
ALL_FEATURES = sum(FEATURES.values())
FEATURES_KEY = "net.core.prism_features"


@dataclass(frozen=True)
class PrismSetting:
    """One way to run a PRISM kernel: its mode, whether the NIC stage splits, and whether anything is listed.

    `empty` turns the mode on with no port and no DSCP value listed: the A/A
    setting, where nothing is marked and PRISM must cost nothing measurable.
    """

    mode: str = "off"
    split: bool = False
    empty: bool = False
    without: tuple[str, ...] = ()  # features turned off (FEATURES), in FEATURES' order

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"prism mode {self.mode!r} must be one of {', '.join(MODES)}")
        if self.mode == "off" and (self.split or self.empty or self.without):
            raise ValueError(f"prism setting {self.text!r}: '+split', '+empty' and '+no-…' need a mode "
                             "(pseudo-sync or sync); with mode off they change nothing")
        unknown = [f for f in self.without if f not in FEATURES]
        if unknown:
            raise ValueError(f"prism setting {self.text!r}: no feature {unknown[0]!r} "
                             f"(features: {', '.join(FEATURES)})")

    @property
    def features(self) -> int:
        """net.core.prism_features for this setting."""
        return ALL_FEATURES & ~sum(FEATURES[f] for f in self.without)

    @property
    def text(self) -> str:
        """As parse_setting() reads it: `pseudo-sync+split`, `sync+no-cell`."""
        return (f"{self.mode}{'+split' if self.split else ''}{'+empty' if self.empty else ''}"
                + "".join(f"+no-{f}" for f in self.without))

    @property
    def label(self) -> str:
        return f"prism-{self.text}"

    @staticmethod
    def sysctls_names() -> tuple[str, ...]:
        return ("net.core.prism_ports", "net.core.prism_dscp", "net.core.prism_split", FEATURES_KEY,
                "net.core.prism_mode")

    def sysctls(self, mix: Mix) -> dict[str, str]:
        """Each sysctl and its value, the mode last (so the sets are in place when it acts)."""
        ports = "" if self.empty else ",".join(str(p) for p in mix.priority_ports)
        dscp = "" if self.empty else ",".join(str(d) for d in mix.priority_dscp)
        return {"net.core.prism_ports": ports, "net.core.prism_dscp": dscp,
                "net.core.prism_split": str(int(self.split)), FEATURES_KEY: str(self.features),
                "net.core.prism_mode": str(MODES[self.mode])}


EXTRAS = ("split", "empty", *(f"no-{f}" for f in FEATURES))


def parse_setting(text: str) -> PrismSetting:
    """`sync`, `pseudo-sync+split`, `pseudo-sync+empty`, `sync+no-cell`, `off` … as given on the command line."""
    mode, *extras = text.split("+")
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown or len(set(extras)) != len(extras):
        raise ValueError(f"prism setting {text!r}: after the mode only {', '.join('+' + e for e in EXTRAS)} "
                         "may follow, each once")
    return PrismSetting(mode, "split" in extras, "empty" in extras,
                        tuple(f for f in FEATURES if f"no-{f}" in extras))


def has_prism(vm) -> bool:
    return vm.run(f"test -e {PROBE}").exit_code == 0


def _path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _has(vm, key: str) -> bool:
    return vm.run(f"test -e {_path(key)}").exit_code == 0


def apply(deployment: Deployment, setting: PrismSetting, mix: Mix) -> None:
    """Set every VM's PRISM sysctls; an empty set is written as an empty list.

    A kernel from before net.core.prism_features (a user's own tree) runs
    every setting that keeps all features; one that turns a feature off is
    refused there, not silently run with it on.
    """
    for name, vm in deployment.machines.items():
        if not has_prism(vm):
            raise TestbedError(f"vm {name}: kernel {vm.spec.kernel} has no {PROBE}: not a PRISM kernel")
        for key, value in setting.sysctls(mix).items():
            if key == FEATURES_KEY and not _has(vm, key):
                if setting.without:
                    raise TestbedError(f"vm {name}: kernel {vm.spec.kernel} has no {_path(key)}: "
                                       f"cannot run {setting.text!r} (a PRISM series without per-feature keys)")
                continue
            vm.run(f"echo '{value}' > {_path(key)}", check=True)


def read(deployment: Deployment) -> dict[str, dict[str, str]]:
    """Every VM's PRISM sysctls as they are now, to put back with restore()."""
    keys = PrismSetting().sysctls_names()
    return {name: {key: vm.run(f"cat {_path(key)}", check=True).stdout.strip() for key in keys if _has(vm, key)}
            for name, vm in deployment.machines.items()}


def restore(deployment: Deployment, saved: dict[str, dict[str, str]]) -> None:
    """Write back what read() saw (the mode last, so the sets are in place when it acts)."""
    for name, values in saved.items():
        vm = deployment.vm(name)
        for key in sorted(values, key=lambda k: k.endswith("prism_mode")):
            vm.run(f"echo '{values[key]}' > /proc/sys/{key.replace('.', '/')}", check=True)
