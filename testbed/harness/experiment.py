"""The main job: one mix on several kernels (and PRISM's settings), over boots and rounds.

The unit of a comparison between kernels is the boot (testbed.analysis.judge):
each kernel is booted `boots` times, in a balanced order (A B B A A B), and
on each boot every condition of that kernel (vanilla as is; PRISM off,
pseudo-sync, sync, ...) runs the loaded mix once per round, the order of the
conditions rotated from round to round, so drift on the host hits them
alike. Settings of one kernel are compared round by round on the same boots.

Before the measured boots, each kernel is booted once more to calibrate
the mix's "auto" flood in each of its conditions and to run every
condition's unloaded twin; the rate every loaded run offers is one for all
conditions (testbed.traffic.calibrate.common_rate). A loaded run that did not hold the
regime (testbed.analysis.regime) is recorded as invalid and run again, at most
`retries` times; a try that failed with an error is recorded too. Every run
becomes a JSON record, every try a line of tries.json; the report and
verdict.json are made from those files alone, as `prism-testbed report DIR`
would.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis import breakdown, regime_report, report
from ..analysis.judge import PRACTICAL_MINIMUM
from ..analysis.run_record import RunRecord
from ..build.image import build_image, load_spec
from ..build.kernel import Kernel
from ..core.cache import atomic_write_text
from ..core.errors import ConfigError, VerdictError
from ..core.progress import console
from ..net import topology as topology_mod
from ..net.deployment import Deployment
from ..traffic import mix as mix_mod
from ..traffic import prism_knobs
from ..traffic.calibrate import GROWTH, START_PPS, Calibration, calibrate, common_rate, host_facts
from ..traffic.run import run_mix
from ..vm import accel as accel_mod
from .kernel_choice import KernelChoice, boot_order, parse_kernels

DEFAULT_SETTINGS = ("off", "pseudo-sync", "sync")
DEFAULT_BOOTS = 3
DEFAULT_ROUNDS = 2  # per boot: the boot is the unit between kernels, so boots buy more than rounds
DEFAULT_RETRIES = 2
CALIBRATION_BOOT = 0  # the boot that calibrates and runs the unloaded twins; no loaded run counts on it


@dataclass
class ExperimentPlan:
    kernels: Sequence[str] = ("vanilla", "prism")
    mix: str = "overlay-flood"
    prism_settings: Sequence[str] = DEFAULT_SETTINGS
    accel: str = "auto"
    source: str | None = None
    results: Path = Path("results")
    boots: int = DEFAULT_BOOTS  # measured boots per kernel
    rounds: int = DEFAULT_ROUNDS  # rounds per boot
    retries: int = DEFAULT_RETRIES  # extra tries of a loaded run that missed the regime
    baseline: str | None = None  # a kernel's label; None: the first

    def check(self) -> list[KernelChoice]:
        """The kernels, or ConfigError naming the bad input, before anything is built or booted."""
        if not 1 <= self.boots <= 50:
            raise ConfigError(f"experiment: --boots {self.boots} must be 1-50")
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
        choices = parse_kernels(self.kernels)
        labels = [c.label for c in choices]
        if self.baseline is not None and self.baseline not in labels:
            raise ConfigError(f"experiment: --baseline {self.baseline!r} is not one of the kernels ({', '.join(labels)})")
        return choices

    def design(self, choices: Sequence[KernelChoice]) -> dict:
        labels = [c.label for c in choices]
        return {"baseline": self.baseline or labels[0], "kernels": [c.describe() for c in choices],
                "boots_per_kernel": self.boots, "rounds_per_boot": self.rounds, "retries": self.retries,
                "boot_order": boot_order(labels, self.boots), "settings": list(self.prism_settings),
                "practical_minimum": PRACTICAL_MINIMUM,
                "units": {"kernel against kernel": "boot", "setting against setting": "round",
                          "flow against flow": "round"}}


@dataclass
class ExperimentResult:
    directory: Path
    design: dict = field(default_factory=dict)
    records: list[RunRecord] = field(default_factory=list)
    tries: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibrations: list[Calibration] = field(default_factory=list)
    rate: float | None = None
    rate_why: str = ""
    host: dict = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        """False when the mix needed calibrating and no common rate was found."""
        return not self.calibrations or self.rate is not None

    def calibration_doc(self) -> dict | None:
        if not self.calibrations:
            return None
        return {"rate": None if self.rate is None else round(self.rate), "why": self.rate_why,
                "kernels": [c.to_dict() for c in self.calibrations]}


@dataclass(frozen=True)
class Condition:
    label: str
    kernel: str
    setting: prism_knobs.PrismSetting | None


def run_experiment(plan: ExperimentPlan) -> ExperimentResult:
    choices = plan.check()
    mix = mix_mod.load(plan.mix)
    topo = topology_mod.load(mix.topology)
    mix.validate(topo)
    settings = [prism_knobs.parse_setting(s) for s in plan.prism_settings]
    out = ExperimentResult(plan.results / f"experiment-{time.strftime('%Y%m%d-%H%M%S')}", plan.design(choices))
    image = build_image(load_spec())
    kernels = {c.label: c.obtain(plan.source) for c in choices}  # every build before the first boot
    accels = {label: accel_mod.choose(plan.accel, k.bzimage) for label, k in kernels.items()}
    out.host = host_facts(next(iter(accels.values())))
    session = _Session(plan, out, topo, image, kernels, accels, settings)
    for c in choices:
        session.calibration_boot(c.label, mix)
    if mix.needs_calibration:
        out.rate, out.rate_why = common_rate(out.calibrations)
        report.write_json(out.directory / "calibration.json", out.calibration_doc())
        if out.rate is None:
            out.notes.append(f"this host could not be brought into the regime on every kernel: {out.rate_why}")
            return out
        console.print(f"flood rate for every kernel: {out.rate:.0f} pps ({out.rate_why})")
    loaded = mix.with_flood_rate(out.rate) if out.rate is not None else mix
    for label, boot in _numbered(out.design["boot_order"]):
        session.measured_boot(label, boot, loaded)
    return out


def _numbered(order: Sequence[str]) -> list[tuple[str, int]]:
    seen: Counter[str] = Counter()
    out = []
    for label in order:
        seen[label] += 1
        out.append((label, seen[label]))
    return out


@dataclass
class _Session:
    """The experiment's boots: what each does, and how every run and try is recorded."""

    plan: ExperimentPlan
    out: ExperimentResult
    topo: topology_mod.Topology
    image: object
    kernels: dict[str, Kernel]
    accels: dict[str, accel_mod.AccelChoice]
    settings: list[prism_knobs.PrismSetting]

    def _conditions(self, label: str, deployment: Deployment) -> list[Condition]:
        if prism_knobs.has_prism(deployment.vm(self.topo.vms[0].name)):
            return [Condition(f"{label}/{s.text}", label, s) for s in self.settings]
        if any(s.mode != "off" for s in self.settings) and label != self.out.design["baseline"]:
            note = f"kernel {label} ({self.kernels[label].release}) has no PRISM sysctls: measured as is"
            if note not in self.out.notes:
                self.out.notes.append(note)
        return [Condition(label, label, None)]

    def _deployment(self, label: str) -> Deployment:
        return Deployment(self.topo, self.kernels[label], self.image, self.accels[label])

    def calibration_boot(self, label: str, mix: mix_mod.Mix) -> None:
        """Calibrate the mix on this kernel in each of its conditions, then run each one's unloaded twin.

        Every condition gets its own ramp: the knee is the target CPU's, but
        the headroom is the stages' before it, and a PRISM setting that
        classifies every packet costs the NIC's CPU more than off does. The
        ramps after the first start near its knee and reuse its measure of
        the flood generator's ceiling.
        """
        console.print(f"[bold]{label}[/]: calibration boot")
        with self._deployment(label) as deployment:
            conditions = self._conditions(label, deployment)
            first: Calibration | None = None
            for cond in conditions if mix.needs_calibration else ():
                self._apply(deployment, cond, mix)
                hint = max(START_PPS, (first.base() or 0) / GROWTH ** 2) if first else START_PPS
                cal = calibrate(deployment, mix, self.accels[label], kernel=cond.label, start=hint,
                                sender=(first.sender_ceiling_pps, first.sender_probe) if first else None)
                self.out.calibrations.append(cal)
                first = first or cal
            for cond in conditions:
                self._apply(deployment, cond, mix)
                console.print(f"[bold]{cond.label}[/] {mix.name} unloaded")
                self._record(run_mix(deployment, mix.without_bulk()), cond, CALIBRATION_BOOT, 1, 1)

    def measured_boot(self, label: str, boot: int, loaded: mix_mod.Mix) -> None:
        """`rounds` rounds of every condition of this kernel, their order rotated each round."""
        with self._deployment(label) as deployment:
            conditions = self._conditions(label, deployment)
            for round_no in range(1, self.plan.rounds + 1):
                shift = (round_no - 1 + boot - 1) % len(conditions)
                for cond in conditions[shift:] + conditions[:shift]:
                    self._apply(deployment, cond, loaded)
                    self._tries(deployment, cond, boot, round_no, loaded)

    def _apply(self, deployment: Deployment, cond: Condition, mix: mix_mod.Mix) -> None:
        if cond.setting is not None:
            prism_knobs.apply(deployment, cond.setting, mix)

    def _tries(self, deployment: Deployment, cond: Condition, boot: int, round_no: int, loaded: mix_mod.Mix) -> None:
        for attempt in range(1, self.plan.retries + 2):
            console.print(f"[bold]{cond.label}[/] {loaded.name} boot {boot}/{self.plan.boots} "
                          f"round {round_no}/{self.plan.rounds}" + (f" (try {attempt})" if attempt > 1 else ""))
            try:
                run = run_mix(deployment, loaded)
            except VerdictError as exc:  # a probe path that did not answer: this try is lost, not the experiment
                self._try(cond, boot, round_no, attempt, "failed", str(exc), None)
                continue
            rec = self._record(run, cond, boot, round_no, attempt)
            why = run.validity()
            self._try(cond, boot, round_no, attempt, "valid" if why is None else "invalid", why, rec.path)
            if why is None:
                return

    def _record(self, run, cond: Condition, boot: int, round_no: int, attempt: int) -> RunRecord:
        rec = report.run_record(run, kernel=self.kernels[cond.kernel], accel=self.accels[cond.kernel],
                                topology=self.topo, case="experiment", label=cond.label)
        rec.kernel_label, rec.setting, rec.boot, rec.round, rec.attempt = (
            cond.kernel, None if cond.setting is None else cond.setting.text, boot, round_no, attempt)
        rec.calibration = self.out.calibration_doc() if boot != CALIBRATION_BOOT else None
        stem = f"{cond.label}-{run.mix.name}-b{boot}-r{round_no}-a{attempt}"
        report.write_record(rec, self.out.directory / "runs", stem)
        self.out.records.append(rec)
        return rec

    def _try(self, cond: Condition, boot: int, round_no: int, attempt: int, outcome: str, why: str | None,
             record: str | None) -> None:
        self.out.tries.append({"label": cond.label, "kernel": cond.kernel, "boot": boot, "round": round_no,
                               "attempt": attempt, "outcome": outcome, "why": why, "record": record})
        if outcome != "valid":
            self.out.notes.append(f"{cond.label} boot {boot} round {round_no} try {attempt}: {outcome}: {why}")
        atomic_write_text(self.out.directory / "tries.json", json.dumps(self.out.tries, indent=1) + "\n")


def publish(result: ExperimentResult) -> None:
    """Tables, verdicts, plot and markdown for an experiment's records."""
    calibration = result.calibration_doc()
    if not result.reached or not result.records:
        for table in report.calibration_tables(calibration or {"kernels": []}):
            console.print(table)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}")
        return
    baseline = result.design.get("baseline")
    for table in report.rich_tables(result.records, baseline=baseline):
        console.print(table)
    verdict_path = regime_report.write_verdicts(result.records, result.directory / "verdict.json", host=result.host,
                                                design=result.design, calibration=calibration, tries=result.tries)
    plot = report.cdf_plot(result.records, result.directory / "cdf.png", title="probe RTT by condition")
    summaries = regime_report.breakdown_summaries(result.records)
    shown = [f for cls in ("priority", "bulk") if (f := regime_report.first_of_class(result.records, cls))]
    summaries = {label: {k: v for k, v in flows.items() if any(k.startswith(f + " ") for f in shown)}
                 for label, flows in summaries.items()}
    if any(v for flows in summaries.values() for v in flows.values()):
        breakdown.stacked_plot(summaries, result.directory / "breakdown.png")
    (result.directory / "report.md").write_text(report.markdown(result.records, baseline=baseline))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"records: {result.directory / 'runs'}  verdict: {verdict_path}  plot: {plot}  "
                  f"markdown: {result.directory / 'report.md'}")
