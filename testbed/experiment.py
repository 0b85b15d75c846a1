"""The main job: one mix, unloaded and loaded, on vanilla and on PRISM in each mode.

Each kernel gets one deployment of the mix's topology; every condition on
it (vanilla as is; prism off, pseudo-sync, sync, with and without split) runs
the unloaded twin and the loaded mix, and each run becomes a JSON record.
The report (table, comparisons, CDF plot, markdown) is made from those
records alone, exactly as `prism-testbed report DIR` would make it later.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import accel as accel_mod
from . import mix as mix_mod
from . import prism_knobs, report
from . import topology as topology_mod
from .deployment import Deployment
from .image import build_image, load_spec
from .kernel import obtain
from .progress import console
from .traffic import run_mix

DEFAULT_SETTINGS = ("pseudo-sync", "sync", "sync+split")


@dataclass
class ExperimentPlan:
    kernels: Sequence[str] = ("vanilla", "prism")
    mix: str = "overlay-flood"
    prism_settings: Sequence[str] = DEFAULT_SETTINGS
    accel: str = "auto"
    source: str | None = None
    results: Path = Path("results")
    repeat: int = 1


@dataclass
class ExperimentResult:
    directory: Path
    records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_experiment(plan: ExperimentPlan) -> ExperimentResult:
    mix = mix_mod.load(plan.mix)
    topo = topology_mod.load(mix.topology)
    mix.validate(topo)
    settings = [prism_knobs.parse_setting(s) for s in plan.prism_settings]
    directory = plan.results / f"experiment-{time.strftime('%Y%m%d-%H%M%S')}"
    out = ExperimentResult(directory)
    image = build_image(load_spec())
    for selector in plan.kernels:
        kernel = obtain(selector, None, plan.source)
        choice = accel_mod.choose(plan.accel, kernel.bzimage)
        with Deployment(topo, kernel, image, choice) as deployment:
            conditions: list[tuple[str, prism_knobs.PrismSetting | None]] = [(kernel.variant, None)]
            if prism_knobs.has_prism(deployment.vm(topo.vms[0].name)):
                conditions = [(s.label, s) for s in settings]
            elif kernel.variant != report.BASELINE:
                out.notes.append(f"kernel {selector} ({kernel.release}) has no PRISM sysctls: measured as is")
            for label, setting in conditions:
                if setting is not None:
                    prism_knobs.apply(deployment, setting, mix)
                for attempt in range(plan.repeat):
                    for m in (mix.without_bulk(), mix):
                        console.print(f"[bold]{label}[/] {m.name} (run {attempt + 1}/{plan.repeat})")
                        run = run_mix(deployment, m)
                        record = report.run_record(run, kernel=kernel, accel=choice, topology=topo,
                                                   case="experiment", label=label)
                        stem = f"{label}-{m.name}-{attempt + 1}"
                        record["_path"] = str(report.write_record(record, directory / "runs", stem))
                        out.records.append(record)
                        if run.validity():
                            out.notes.append(f"{label} {m.name}: {run.validity()}")
    return out


def publish(result: ExperimentResult) -> None:
    """Table, comparisons, plot and markdown for an experiment's records."""
    for table in report.rich_tables(result.records):
        console.print(table)
    plot = report.cdf_plot(result.records, result.directory / "cdf.png", title="probe RTT: prism vs vanilla")
    (result.directory / "report.md").write_text(report.markdown(result.records))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"records: {result.directory / 'runs'}  plot: {plot}  markdown: {result.directory / 'report.md'}")
