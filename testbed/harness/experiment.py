"""The main job: one mix on vanilla and on PRISM's settings, over interleaved rounds.

Each kernel gets one deployment of the mix's topology. A mix whose flood
says rate = "auto" is calibrated once, on the first boot, and every loaded
run of every kernel offers that same rate (testbed.traffic.calibrate). On each boot,
every condition (vanilla as is; PRISM off, pseudo-sync, sync, ...) runs its
unloaded twin once, then the loaded mix once per round, the conditions in
turn, so drift on the host hits them alike. A loaded run that did not hold
the regime (testbed.analysis.regime) is recorded as invalid and run again, at most
`retries` times; the verdicts count valid rounds only (testbed.analysis.rounds).
Every run becomes a JSON record; the report and verdict.json are made from
those records alone, exactly as `prism-testbed report DIR` would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis import breakdown, regime_report, report
from ..analysis.run_record import RunRecord
from ..build.image import build_image, load_spec
from ..build.kernel import obtain
from ..core.errors import ConfigError, VerdictError
from ..core.progress import console
from ..net import topology as topology_mod
from ..net.deployment import Deployment
from ..traffic import mix as mix_mod
from ..traffic import prism_knobs
from ..traffic.calibrate import Calibration, calibrate, calibrated, host_facts
from ..traffic.run import run_mix
from ..vm import accel as accel_mod

DEFAULT_SETTINGS = ("off", "pseudo-sync", "sync")
DEFAULT_ROUNDS = 5
DEFAULT_RETRIES = 2


@dataclass
class ExperimentPlan:
    kernels: Sequence[str] = ("vanilla", "prism")
    mix: str = "overlay-flood"
    prism_settings: Sequence[str] = DEFAULT_SETTINGS
    accel: str = "auto"
    source: str | None = None
    results: Path = Path("results")
    rounds: int = DEFAULT_ROUNDS
    retries: int = DEFAULT_RETRIES  # extra tries of a loaded run that missed the regime

    def check(self) -> None:
        """ConfigError naming the bad input, before anything is built or booted."""
        if not 1 <= self.rounds <= 100:
            raise ConfigError(f"experiment: --rounds {self.rounds} must be 1-100")
        if not 0 <= self.retries <= 10:
            raise ConfigError(f"experiment: --retries {self.retries} must be 0-10")
        for text in self.prism_settings:
            try:
                prism_knobs.parse_setting(text)
            except ValueError as exc:
                shown = text if text.isprintable() and text.strip() else repr(text)
                raise ConfigError(f"experiment: --prism {shown}: {exc}") from None


@dataclass
class ExperimentResult:
    directory: Path
    records: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: Calibration | None = None
    host: dict = field(default_factory=dict)
    rounds: int = 0


def run_experiment(plan: ExperimentPlan) -> ExperimentResult:
    plan.check()
    mix = mix_mod.load(plan.mix)
    topo = topology_mod.load(mix.topology)
    mix.validate(topo)
    settings = [prism_knobs.parse_setting(s) for s in plan.prism_settings]
    directory = plan.results / f"experiment-{time.strftime('%Y%m%d-%H%M%S')}"
    out = ExperimentResult(directory, rounds=plan.rounds)
    image = build_image(load_spec())
    loaded = mix
    for selector in plan.kernels:
        kernel = obtain(selector, None, plan.source)
        choice = accel_mod.choose(plan.accel, kernel.bzimage)
        with Deployment(topo, kernel, image, choice) as deployment:
            conditions: list[tuple[str, prism_knobs.PrismSetting | None]] = [(kernel.variant, None)]
            if prism_knobs.has_prism(deployment.vm(topo.vms[0].name)):
                conditions = [(s.label, s) for s in settings]
            elif kernel.variant != report.BASELINE:
                out.notes.append(f"kernel {selector} ({kernel.release}) has no PRISM sysctls: measured as is")
            if mix.needs_calibration and out.calibration is None:
                out.host = host_facts(choice)
                if conditions[0][1] is not None:  # a PRISM kernel calibrates as it measures off: untouched
                    prism_knobs.apply(deployment, prism_knobs.PrismSetting("off"), mix)
                out.calibration = calibrate(deployment, mix, choice)
                report.write_json(directory / "calibration.json", out.calibration.to_dict())
                if not out.calibration.reached:
                    out.notes.append(f"this host could not be brought into the regime: {out.calibration.why}")
                    return out
                loaded = calibrated(mix, out.calibration)
            _run_conditions(plan, deployment, kernel, choice, topo, conditions, loaded, out)
    return out


def _run_conditions(plan, deployment: Deployment, kernel, choice, topo, conditions, loaded: mix_mod.Mix,
                    out: ExperimentResult) -> None:
    """Each condition's unloaded twin once, then the loaded mix round by round, conditions in turn."""
    def record(run, label: str, round_no: int, attempt: int) -> RunRecord:
        rec = report.run_record(run, kernel=kernel, accel=choice, topology=topo, case="experiment", label=label)
        rec.round, rec.attempt = round_no, attempt
        rec.calibration = out.calibration.to_dict() if out.calibration else None
        report.write_record(rec, out.directory / "runs", f"{label}-{run.mix.name}-r{round_no}-a{attempt}")
        out.records.append(rec)
        return rec

    for label, setting in conditions:
        if setting is not None:
            prism_knobs.apply(deployment, setting, loaded)
        console.print(f"[bold]{label}[/] {loaded.name} unloaded")
        record(run_mix(deployment, loaded.without_bulk()), label, 1, 1)
    for round_no in range(1, plan.rounds + 1):
        for label, setting in conditions:
            if setting is not None:
                prism_knobs.apply(deployment, setting, loaded)
            for attempt in range(1, plan.retries + 2):
                console.print(f"[bold]{label}[/] {loaded.name} round {round_no}/{plan.rounds}"
                              + (f" (try {attempt})" if attempt > 1 else ""))
                try:
                    run = run_mix(deployment, loaded)
                except VerdictError as exc:  # a probe path that did not answer: this try is lost, not the experiment
                    out.notes.append(f"{label} round {round_no} try {attempt}: failed: {exc}")
                    continue
                record(run, label, round_no, attempt)
                if run.validity() is None:
                    break
                out.notes.append(f"{label} round {round_no} try {attempt}: {run.validity()}")


def publish(result: ExperimentResult) -> None:
    """Tables, comparisons, verdicts, plot and markdown for an experiment's records."""
    if not result.records:
        if result.calibration is not None:  # the host was not brought into the regime: the ramp says why
            for table in report.calibration_tables(result.calibration.to_dict()):
                console.print(table)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}")
        return
    for table in report.rich_tables(result.records):
        console.print(table)
    verdict_path = regime_report.write_verdicts(
        result.records, result.directory / "verdict.json", host=result.host, rounds_run=result.rounds,
        calibration=result.calibration.to_dict() if result.calibration else None)
    plot = report.cdf_plot(result.records, result.directory / "cdf.png", title="probe RTT: prism vs vanilla")
    summaries = regime_report.breakdown_summaries(result.records)
    if any(v for flows in summaries.values() for v in flows.values()):
        breakdown.stacked_plot({label: {f: s for f, s in flows.items() if f.startswith("priority ") or
                                        f.startswith("bulk ")} for label, flows in summaries.items()},
                               result.directory / "breakdown.png")
    (result.directory / "report.md").write_text(report.markdown(result.records))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"records: {result.directory / 'runs'}  verdict: {verdict_path}  plot: {plot}  "
                  f"markdown: {result.directory / 'report.md'}")
