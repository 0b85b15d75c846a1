"""One run of a mix on one kernel, as results/**/*.json hold it: written and read only through RunRecord.

The record's parts are fields; inside each part is the plain data the JSON
holds (a flow's summary and integrity, a VM's stage counters), whose shape
record_schema states and checks on reading. `schema` versions the format;
a record from before a field existed (rounds, retries, the prober's
counters, the host's drops) reads with that field at its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "prism-testbed/run/1"


@dataclass
class RunRecord:
    """The JSON record of one run (testbed.traffic.run.MixRun) on one kernel."""

    label: str  # the condition in tables: the kernel's variant, or e.g. prism-sync
    mix: dict  # name, loaded, origin, description, settle, floods, iperf3, tuning
    flows: dict[str, dict]  # per probe flow: class, summary, integrity, probes (rows: records.ProbeRow), ...
    kernel: dict = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)  # per receiving VM: stagewatch's counters
    floods: list[dict] = field(default_factory=list)
    iperf3: list[dict] = field(default_factory=list)
    regime: dict | None = None  # {"valid": bool, "why": str, ...}; None: never checked
    validity: str | None = None  # why the run does not count; None: it does
    prober: dict = field(default_factory=dict)
    host_drops: dict = field(default_factory=dict)
    host_drop_timeline: list = field(default_factory=list)  # [t_ns, where, count]
    case: str = ""
    accel: dict = field(default_factory=dict)
    topology: dict = field(default_factory=dict)
    host: dict = field(default_factory=dict)
    seconds: float = 0.0
    round: Any = 1  # the experiment's round; as written (counted.round_of checks it), 1 before rounds existed
    attempt: int | None = None  # the try of that round; None before retries existed
    calibration: dict | None = None
    kernel_label: str | None = None  # the kernel as the experiment names it (vanilla, vanilla#2); None: label
    setting: str | None = None  # the PRISM setting of this condition (off, sync, ...); None: the kernel as is
    boot: int | None = None  # which boot of kernel_label this run was on (1, 2, ...); None: one boot
    schema: str = SCHEMA
    path: str | None = None  # where it was written or read; not part of the JSON

    def to_dict(self) -> dict:
        """The JSON form, schema first (a truncated file still says what it was)."""
        data = {"schema": self.schema}
        data.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("schema", "path"))
        return data

    @classmethod
    def from_dict(cls, data: Mapping, path: str | None = None) -> RunRecord:
        """The record of a JSON object (checked by record_schema first where it comes from a file)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"path"}
        known = {k: v for k, v in data.items() if k in names}
        if not known.get("label"):
            known["label"] = data.get("kernel", {}).get("variant", "")
        if known.get("round") is None:
            known["round"] = 1
        return cls(**known, path=path)

    @property
    def kernel_name(self) -> str:
        """The kernel's label (records from before kernel labels: the condition's label)."""
        return self.kernel_label or self.label

    @property
    def boot_no(self) -> int:
        return 1 if self.boot is None else self.boot

    def where(self) -> str:
        """The record in a message: its file, or its condition and mix."""
        return self.path or f"run {self.label!r} {self.mix['name']}"
