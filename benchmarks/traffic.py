"""Traffic engine figures: probe schedule accuracy, top probe rate, the calibration of the mix's flood.

    .venv/bin/python benchmarks/traffic.py [--kernel vanilla] [--mix overlay-flood]

Prints tables and writes results/bench-traffic.json; asserts nothing.
- send lateness: how late probes left against their schedule (p50/p99/max),
  per probe rate, with no load;
- top probe rate: the highest rate whose lateness p99 stays under 1 ms and
  whose achieved rate is within 2 % of the target;
- the calibration (testbed.traffic.calibrate): the flood generator's ceiling, then
  the mix's flood at rising rates with the regime each step held (the
  target CPU's backlog occupancy, drops before it), and the rate chosen;
- wall time of one loaded run of the mix (unloaded twin excluded).
The wall time of the loaded pytest case is `time pytest cases/test_traffic.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures

from testbed.analysis.latency import percentile
from testbed.build.image import build_image, load_spec
from testbed.build.kernel import obtain
from testbed.core.progress import console
from testbed.net import topology as topology_mod
from testbed.net.deployment import Deployment
from testbed.traffic import mix as mix_mod
from testbed.traffic.calibrate import calibrate, calibrated
from testbed.traffic.run import run_mix
from testbed.vm import accel as accel_mod

PROBE_RATES = (200, 1000, 2000, 5000, 10000)
FLOOD_RATES = (2000, 4000, 6000, 8000, 10000, 12000, 16000, 20000)


def lateness_sweep(deployment, mix) -> list[dict]:
    rows = []
    base = mix.flows_of(mix_mod.PRIORITY)[0]
    for rate in PROBE_RATES:
        probe = dataclasses.replace(base, rate=float(rate), count=int(min(rate * 3, 10000)))
        m = dataclasses.replace(mix.without_bulk(), probes=(probe,), classes={probe.name: mix_mod.PRIORITY})
        run = run_mix(deployment, m)
        late = sorted(run.probes.lateness_ns[probe.name])
        sent = [r.sent_ns for r in run.probes.records]
        achieved = (len(sent) - 1) / ((max(sent) - min(sent)) / 1e9)
        integrity = run.results().integrity(probe.name)
        rows.append({"rate": rate, "achieved": round(achieved, 1), "lateness_p50_us": percentile(late, 50) / 1000,
                     "lateness_p99_us": percentile(late, 99) / 1000, "lateness_max_us": late[-1] / 1000,
                     "lost": integrity.lost})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", default="vanilla")
    parser.add_argument("--mix", default="overlay-flood")
    parser.add_argument("--output", type=Path, default=Path("results/bench-traffic.json"))
    args = parser.parse_args()

    mix = mix_mod.load(args.mix)
    topo = topology_mod.load(mix.topology)
    kernel = obtain(args.kernel)
    image = build_image(load_spec())
    choice = accel_mod.choose("auto", kernel.bzimage)
    out: dict = {"kernel": kernel.release, "accel": choice.as_dict(), "loadavg_start": os.getloadavg()[0]}
    with Deployment(topo, kernel, image, choice) as deployment:
        out["lateness"] = lateness_sweep(deployment, mix)
        figures.show("probe send lateness (no load)", out["lateness"])
        keeps = [r["rate"] for r in out["lateness"]
                 if r["lateness_p99_us"] < 1000 and r["achieved"] >= 0.98 * r["rate"]]
        out["top_probe_rate"] = max(keeps, default=None)
        console.print(f"top probe rate kept (lateness p99 < 1 ms, rate within 2 %): {out['top_probe_rate']}")
        # the flood sweep is the calibration's ramp: the regime it finds, step by step
        cal = calibrate(deployment, mix, choice)
        out["calibration"] = cal.to_dict()
        figures.show(f"calibration of {mix.name} on {topo.name}",
                     [{k: v for k, v in step.to_dict().items() if k != "regime"}
                      | {"occupancy": step.regime.occupancy, "regime": step.regime.valid} for step in cal.steps])
        console.print(f"chosen rate: {cal.rate} pps ({cal.why}); sender ceiling: {cal.sender_ceiling_pps} pps")
        start = time.monotonic()
        run_mix(deployment, calibrated(mix, cal) if cal.reached else mix.without_bulk())
        out["loaded_run_seconds"] = round(time.monotonic() - start, 1)
        console.print(f"one loaded run of {mix.name}: {out['loaded_run_seconds']} s")
    out["loadavg_end"] = os.getloadavg()[0]
    figures.write(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
