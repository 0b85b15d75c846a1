"""Run-to-run spread of the loaded mix on one boot, PRISM settings interleaved.

    .venv/bin/python benchmarks/spread.py [--kernel prism] [--mix overlay-flood]
        [--settings off,pseudo-sync,sync] [--rounds 3]

Prints tables and writes results/bench-spread.json; asserts nothing.
Each round runs the loaded mix once per setting, in turn, on the same
deployment, so slow drift on the host hits every setting alike. Per run:
priority and bulk p50/p99, priority probes lost, the server's backlog
(mean, peak, drops) and gro_cells drops, and the host CPU each QEMU thread
used (threads are named: CPU n/TCG, the main loop). Per setting: the
median, lowest and highest priority p99 over the rounds, and in how many
rounds it was below the first setting's p99 of the same round. A load
design that shows a mechanism's effect should give a small spread here
before any case asserts on it. On a kernel without PRISM the settings are
ignored and the mix runs as is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures

from testbed.build.image import build_image, load_spec
from testbed.build.kernel import obtain
from testbed.core.progress import console
from testbed.net import topology as topology_mod
from testbed.net.deployment import Deployment
from testbed.traffic import mix as mix_mod
from testbed.traffic import prism_knobs
from testbed.traffic.calibrate import calibrate, calibrated
from testbed.traffic.run import run_mix
from testbed.vm import accel as accel_mod

TICK = os.sysconf("SC_CLK_TCK")


def qemu_threads(deployment) -> dict[str, int]:
    """CPU ticks so far of every thread of the deployment's QEMUs, keyed 'vm/thread name'."""
    marks = {vm: str(m.files.qmp) for vm, m in deployment.machines.items()}
    out: dict[str, int] = Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            vm = next((v for v, mark in marks.items() if mark in cmdline), None)
            if vm is None:
                continue
            for tid in os.listdir(f"/proc/{pid}/task"):
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                out[f"{vm}/{name}"] += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, ValueError):
            continue
    return out


def host_busy(before: list[int], after: list[int]) -> float:
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return 1 - (delta[3] + delta[4]) / sum(delta)


def cpu_line() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def one_run(deployment, mix, label: str) -> dict:
    threads0, cpu0, t0 = qemu_threads(deployment), cpu_line(), time.monotonic()
    run = run_mix(deployment, mix)
    seconds = time.monotonic() - t0
    threads = qemu_threads(deployment)
    results = run.results()
    row: dict = {"setting": label, "seconds": round(seconds, 1),
                 "host_busy": round(host_busy(cpu0, cpu_line()), 3), "loadavg": run.host_load[1]}
    for flow in ("priority", "bulk"):
        samples = results.samples(flow)
        row[f"{flow}_p50_ms"] = round(samples.percentile(50) / 1000, 1)
        row[f"{flow}_p99_ms"] = round(samples.percentile(99) / 1000, 1)
    row["regime"] = run.regime.valid if run.regime else None
    row["priority_lost"] = sum(results.integrity(f.name).lost for f in mix.flows_of(mix_mod.PRIORITY))
    server = run.stages.get("server") or next(iter(run.stages.values()))
    backlog = max(server.backlog, key=lambda b: b.mean) if server.backlog else None
    row.update(backlog_cpu=backlog.cpu if backlog else None, backlog_mean=backlog.mean if backlog else None,
               backlog_peak=backlog.peak if backlog else None, backlog_drops=server.softnet.get("dropped", 0),
               gro_cells_drops=sum(server.gro_cells_dropped.values()), tap_drops=server.tap_dropped)
    row["qemu_cpu"] = {k: round((v - threads0.get(k, 0)) / TICK / seconds, 2)
                       for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v - threads0.get(k, 0) > 0}
    return row


def summary(rows: list[dict], labels: list[str]) -> list[dict]:
    out = []
    rounds = [rows[i:i + len(labels)] for i in range(0, len(rows), len(labels))]
    for label in labels:
        p99 = [r["priority_p99_ms"] for r in rows if r["setting"] == label]
        below = sum(1 for rnd in rounds if rnd[labels.index(label)]["priority_p99_ms"] < rnd[0]["priority_p99_ms"])
        out.append({"setting": label, "runs": len(p99), "p99 median ms": statistics.median(p99),
                    "p99 low": min(p99), "p99 high": max(p99), "high/low": round(max(p99) / min(p99), 2),
                    f"rounds below {labels[0]}": below if label != labels[0] else "-",
                    "prio lost": sum(r["priority_lost"] for r in rows if r["setting"] == label),
                    "runs with backlog drops": sum(1 for r in rows if r["setting"] == label and r["backlog_drops"])})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", default="prism")
    parser.add_argument("--mix", default="overlay-flood")
    parser.add_argument("--settings", default="off,pseudo-sync,sync")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, help="the flood's rate in pps (default: the mix's, or calibrated)")
    parser.add_argument("--output", type=Path, default=Path("results/bench-spread.json"))
    args = parser.parse_args()

    mix = mix_mod.load(args.mix)
    topo = topology_mod.load(mix.topology)
    mix.validate(topo)
    kernel = obtain(args.kernel)
    image = build_image(load_spec())
    choice = accel_mod.choose("auto", kernel.bzimage)
    settings = [prism_knobs.parse_setting(s) for s in args.settings.split(",")]
    out: dict = {"kernel": kernel.release, "mix": mix.name, "accel": choice.as_dict(), "runs": []}
    with Deployment(topo, kernel, image, choice) as deployment:
        if not prism_knobs.has_prism(deployment.vm(topo.vms[0].name)):
            settings = [None]
        if args.rate:
            mix = mix.with_flood_rate(args.rate)
        elif mix.needs_calibration:
            if settings[0] is not None:
                prism_knobs.apply(deployment, prism_knobs.PrismSetting("off"), mix)
            cal = calibrate(deployment, mix, choice)
            out["calibration"] = cal.to_dict()
            mix = calibrated(mix, cal)
        labels = [s.label if s else kernel.variant for s in settings]
        for round_no in range(args.rounds):
            for setting, label in zip(settings, labels, strict=True):
                if setting is not None:
                    prism_knobs.apply(deployment, setting, mix)
                row = one_run(deployment, mix, label)
                console.print(f"round {round_no + 1}/{args.rounds} {label}: priority p99 {row['priority_p99_ms']} ms, "
                              f"lost {row['priority_lost']}, backlog mean {row['backlog_mean']}, "
                              f"host busy {row['host_busy']:.0%}, QEMU threads {row['qemu_cpu']}")
                out["runs"].append(row)
    figures.show(f"{mix.name} on {kernel.release}: every run (ms; backlog of the busiest CPU)",
         [{"setting": r["setting"].removeprefix("prism-"), "prio p50": r["priority_p50_ms"],
           "prio p99": r["priority_p99_ms"], "bulk p99": r["bulk_p99_ms"], "prio lost": r["priority_lost"],
           "backlog mean": r["backlog_mean"], "backlog drops": r["backlog_drops"],
           "gro_cells drops": r["gro_cells_drops"], "tap drops": r["tap_drops"]} for r in out["runs"]])
    out["summary"] = summary(out["runs"], labels)
    figures.show("priority p99 over the rounds", out["summary"])
    figures.write(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
