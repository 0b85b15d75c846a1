"""pytest side of the traffic engine: the `traffic` fixture and the report at the end.

Every mix a case runs is written as a JSON run record under
results/<run>/traffic/; at the end of the session all of them are printed
as one table (and comparison), plotted as one CDF (traffic-cdf.png) and
written as markdown (traffic.md), the same output `prism-testbed report`
gives for a directory of records.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..analysis import report
from ..analysis.run_record import RunRecord
from ..traffic import mix as mix_mod
from ..traffic import prism_knobs
from ..traffic.calibrate import GROWTH, START_PPS, Calibration, calibrate, calibrated, common_rate
from ..traffic.run import MixRun, run_mix
from .pytest_plugin import _state

if TYPE_CHECKING:
    from ..net.deployment import Deployment

_CALIBRATIONS = pytest.StashKey[dict]()
TRIES = 3  # runs of a loaded mix before a case concludes the regime cannot be held (the experiment's 1 + 2 retries)

_RECORDS = pytest.StashKey[list]()


class Traffic:
    """Runs mixes on a case's deployment and records each run."""

    def __init__(self, request: pytest.FixtureRequest, deployment, kernel, accel):
        self.request, self.deployment, self.kernel, self.accel = request, deployment, kernel, accel
        self.directory: Path = _state(request.config).results / "traffic"

    def mix(self, name: str) -> mix_mod.Mix:
        return mix_mod.load(name).validate(self.deployment.topology)

    def _key(self, mix: mix_mod.Mix) -> tuple:
        """What a calibration depends on: the load, not the mix's name."""
        return (self.deployment.topology.name, tuple((f.dst, f.size, f.flows) for f in mix.floods if f.rate is None),
                tuple((h.container, h.cpus, h.loops) for h in mix.hogs), repr(sorted(mix.tuning.items())))

    def calibration(self, mix: mix_mod.Mix) -> Calibration:
        """The session's calibration of the mix's load, made on the first deployment that needs it.

        Every kernel then offers the same rate, as the experiment does. A
        PRISM kernel is calibrated with PRISM off and its settings put back.
        Variants of one mix (a setting's label, a priority flood) share it:
        the key is the load, not the name.
        """
        cache = self.request.config.stash.setdefault(_CALIBRATIONS, {})
        key = self._key(mix)
        if key not in cache:
            vm = next(iter(self.deployment.machines.values()))
            saved = None
            if prism_knobs.has_prism(vm):
                saved = prism_knobs.read(self.deployment)
                prism_knobs.apply(self.deployment, prism_knobs.PrismSetting("off"), mix)
            try:
                cache[key] = calibrate(self.deployment, mix, self.accel, kernel=self.kernel.variant)
            finally:
                if saved is not None:
                    prism_knobs.restore(self.deployment, saved)
            report.write_json(self.directory / f"calibration-{mix.name}.json", cache[key].to_dict())
        return cache[key]

    def calibrate_settings(self, mix: mix_mod.Mix, settings: Sequence[str]) -> Calibration:
        """The session's calibration of the mix's load, extended to these PRISM settings on this kernel.

        As the experiment's calibration boots do: a setting that classifies
        every packet costs the NIC's CPU more than off, so its headroom is
        its own. Each setting gets a ramp (starting near the first knee),
        and the session's one rate becomes the common rate of all of them
        (testbed.traffic.calibrate.common_rate), for every run after this,
        vanilla's included. None of it on a kernel without PRISM.
        """
        first = self.calibration(mix)
        if not first.reached or not prism_knobs.has_prism(next(iter(self.deployment.machines.values()))):
            return first
        saved = prism_knobs.read(self.deployment)
        found = [first]
        try:
            for text in settings:
                prism_knobs.apply(self.deployment, prism_knobs.parse_setting(text), mix)
                found.append(calibrate(self.deployment, mix, self.accel, kernel=f"{self.kernel.variant}/{text}",
                                       start=max(START_PPS, (first.base() or 0) / GROWTH ** 2),
                                       sender=(first.sender_ceiling_pps, first.sender_probe)))
        finally:
            prism_knobs.restore(self.deployment, saved)
        rate, why = common_rate(found)
        joined = dataclasses.replace(first, rate=rate, why=why,
                                     steps=[s for c in found for s in c.steps])
        self.request.config.stash[_CALIBRATIONS][self._key(mix)] = joined
        report.write_json(self.directory / f"calibration-{mix.name}-settings.json",
                          {"rate": rate, "why": why, "kernels": [c.to_dict() for c in found]})
        return joined

    def run(self, mix: mix_mod.Mix) -> MixRun:
        """Run a mix and record it; an "auto" flood is calibrated first (skip: the host cannot reach the regime)."""
        cal = None
        if mix.needs_calibration:
            cal = self.calibration(mix)
            if not cal.reached:
                pytest.skip(f"this host could not be brought into the regime: {cal.why}")
            mix = calibrated(mix, cal)
        run = run_mix(self.deployment, mix)
        case = self.request.node.nodeid
        record = report.run_record(run, kernel=self.kernel, accel=self.accel, topology=self.deployment.topology,
                                   case=case)
        record.calibration = cal.to_dict() if cal else None
        stem = f"{re.sub(r'[^A-Za-z0-9]+', '_', case.split('::')[-1])}-{self.kernel.variant}-{mix.name}"
        report.write_record(record, self.directory, stem)
        self.request.config.stash.setdefault(_RECORDS, []).append(record)
        return run

    def run_in_regime(self, mix: mix_mod.Mix, tries: int = TRIES, standing_only: bool = False) -> MixRun:
        """The mix until a run holds its regime (every try is recorded); AssertionError with each try's reason.

        standing_only asks only that the target backlog stood, not for headroom
        before it: for a case whose question is a count at the target itself.
        """
        reasons = []
        for _ in range(tries):
            run = self.run(mix)
            if not standing_only:
                why = run.validity()
            elif run.regime is None:
                why = "no regime recorded"
            else:
                why = None if run.regime.standing else run.regime.why
            if why is None:
                return run
            reasons.append(why)
        raise AssertionError(f"mix {mix.name}: no run of {tries} held the regime:\n" + "\n".join(reasons))


@pytest.fixture(scope="module")
def traffic(request: pytest.FixtureRequest, deployment: Deployment, kernel, accel) -> Traffic:
    """Run mixes (testbed.traffic.mix) on the module's topology; each run is recorded and reported."""
    return Traffic(request, deployment, kernel, accel)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    directory = _state(config).results
    plot = report.cdf_plot(records, directory / "traffic-cdf.png", title="probe RTT, this session")
    by_case: dict[str, list[RunRecord]] = {}
    for r in records:
        by_case.setdefault(r.case, []).append(r)
    for case, case_records in by_case.items():  # one plot per case: every flow on every kernel it ran on
        name = re.sub(r"[^A-Za-z0-9]+", "_", case.split("::")[0]).strip("_")
        report.cdf_plot(case_records, directory / "traffic" / f"{name}.png", title=f"probe RTT: {case}")
    (directory / "traffic.md").write_text(report.markdown(records))
    from rich.console import Console

    console = Console(file=terminalreporter._tw._file, width=max(160, terminalreporter._tw.fullwidth))
    terminalreporter.section("prism-testbed traffic")
    for table in report.rich_tables(records):
        console.print(table)
    terminalreporter.write_line(f"records: {directory / 'traffic'}  plot: {plot}  markdown: {directory / 'traffic.md'}")
