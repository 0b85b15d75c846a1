"""`prism-testbed experiment|report`: the main job, and reports from run records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis import report
from ..core.errors import ConfigError
from ..core.progress import console
from ..harness.experiment import (
    DEFAULT_BOOTS,
    DEFAULT_RETRIES,
    DEFAULT_ROUNDS,
    DEFAULT_SETTINGS,
    ExperimentPlan,
    publish,
    run_experiment,
)
from ..traffic.prism_knobs import FEATURES


def cmd_experiment(args: argparse.Namespace) -> int:
    """The main job: the mix unloaded and loaded on each kernel (and PRISM mode), then the report."""
    plan = ExperimentPlan(kernels=args.kernels, mix=args.mix, prism_settings=args.prism, accel=args.accel,
                          source=args.source, results=args.results, boots=args.boots, rounds=args.rounds,
                          retries=args.retries, baseline=args.baseline)
    result = run_experiment(plan)
    publish(result)
    if not result.reached:
        console.print(f"[red]no verdict:[/] this host could not be brought into the regime: {result.rate_why}")
        return 1
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Boot the mix's topology on one kernel and find its operating point (what `experiment` does first)."""
    import time

    from ..build.image import build_image, load_spec
    from ..build.kernel import obtain
    from ..net import topology as topology_mod
    from ..net.deployment import Deployment
    from ..traffic import mix as mix_mod
    from ..traffic import prism_knobs
    from ..traffic.calibrate import calibrate
    from ..vm import accel as accel_mod

    mix = mix_mod.load(args.mix)
    topo = topology_mod.load(mix.topology)
    mix.validate(topo)
    kernel = obtain(args.kernel, None, args.source)
    image = build_image(load_spec())
    choice = accel_mod.choose(args.accel, kernel.bzimage)
    with Deployment(topo, kernel, image, choice) as deployment:
        if prism_knobs.has_prism(deployment.vm(topo.vms[0].name)):
            prism_knobs.apply(deployment, prism_knobs.PrismSetting("off"), mix)
        result = calibrate(deployment, mix, choice)
    for table in report.calibration_tables(result.to_dict()):
        console.print(table)
    path = report.write_json(args.results / f"calibration-{mix.name}-{time.strftime('%Y%m%d-%H%M%S')}.json",
                             result.to_dict())
    console.print(f"calibration: {path}", highlight=False)
    return 0 if result.reached else 1


def cmd_report(args: argparse.Namespace) -> int:
    """Merge run records (files or directories) into one table, comparison and plot."""
    if args.plot is not None:
        if args.plot.suffix.lower() != ".png":
            raise ConfigError(f"report: --plot {args.plot}: the plot is a PNG; give a path ending in .png")
        if not args.plot.parent.is_dir():
            raise ConfigError(f"report: --plot {args.plot}: directory {args.plot.parent} does not exist")
    skipped: list[str] | None = [] if args.skip_bad else None
    records = report.load_records(args.paths, skipped=skipped)
    for line in skipped or ():
        console.print(f"[yellow]skipped[/]: {line}", highlight=False)
    if skipped:
        console.print(f"[yellow]{len(skipped)} damaged record{'s' * (len(skipped) != 1)} left out; "
                      f"{len(records)} compared[/]", highlight=False)
    baseline = args.baseline or report.recorded_baseline(args.paths)
    if args.markdown:
        sys.stdout.write(report.markdown(records, baseline=baseline))
    else:
        for table in report.rich_tables(records, baseline=baseline):
            console.print(table)
    if args.plot:
        report.cdf_plot(records, args.plot)
        console.print(f"plot: {args.plot}", highlight=False)
    return 0


def add_parsers(sub) -> None:
    exp = sub.add_parser("experiment", help="the main job: prism vs vanilla")
    exp.add_argument("--kernels", nargs="+", default=["vanilla", "prism"], metavar="[LABEL=]KERNEL",
                     help="variants, bzImage files or kernel trees (built in place); the same one twice is the A/A "
                          "check (labelled NAME#2)")
    exp.add_argument("--baseline", metavar="LABEL", help="the kernel the others are judged against (default: the first)")
    exp.add_argument("--boots", type=int, default=DEFAULT_BOOTS,
                     help="measured boots per kernel, in a balanced order: the unit of a verdict between kernels")
    exp.add_argument("--mix", default="overlay-flood", help="mix from cases/mixes/ or a path")
    exp.add_argument("--prism", nargs="+", default=list(DEFAULT_SETTINGS), metavar="MODE[+EXTRA...]",
                     help="PRISM settings to measure on PRISM kernels (MODE: off, pseudo-sync, sync; "
                          "+split: the NIC stage splits; +empty: nothing listed, the A/A check; "
                          f"{', '.join('+no-' + f for f in FEATURES)}: that feature off, an ablation, "
                          "judged against off and against its MODE on the same boots)")
    exp.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                     help="rounds per boot: each runs every condition of the kernel once, in a rotating order")
    exp.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                     help="extra tries of a loaded run that did not hold the regime")
    exp.add_argument("--source")
    exp.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    exp.add_argument("--results", type=Path, default=Path("results"))
    exp.set_defaults(func=cmd_experiment)

    cal = sub.add_parser("calibrate", help="find a mix's flood rate on this host (the experiment's first step)")
    cal.add_argument("--kernel", default="vanilla")
    cal.add_argument("--mix", default="overlay-flood", help="mix from cases/mixes/ or a path")
    cal.add_argument("--source")
    cal.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    cal.add_argument("--results", type=Path, default=Path("results"))
    cal.set_defaults(func=cmd_calibrate)

    rep = sub.add_parser("report", help="merge run records into one comparison")
    rep.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="result directories or record files")
    rep.add_argument("--markdown", action="store_true", help="print markdown (e.g. for a CI job summary)")
    rep.add_argument("--baseline", metavar="LABEL",
                     help="the kernel the others are judged against (default: as the experiment's verdict.json "
                          "says, else vanilla, else the first)")
    rep.add_argument("--plot", type=Path, help="also write a CDF plot (PNG) here")
    rep.add_argument("--skip-bad", action="store_true",
                     help="leave out records that cannot be read, and say which, instead of stopping")
    rep.set_defaults(func=cmd_report)
