"""Topology readiness: launch to every container reachable. Prints; asserts nothing.

    .venv/bin/python benchmarks/topology.py [--topology two-vm] [--runs 3] [--kernel vanilla] [--backend qemu|libvirt]

"Ready" is the deployment up (VMs booted in parallel, overlay and
containers laid out); "reachable" adds one ping from every container to
every other, so the figure covers a topology a case can use at once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.build.image import build_image, load_spec
from testbed.build.kernel import obtain
from testbed.core.progress import console
from testbed.net import topology as topology_mod
from testbed.net.backend import BACKENDS, Backend
from testbed.net.deployment import Deployment
from testbed.vm import accel as accel_mod


def one_run(topo, kernel, image, choice, backend: Backend) -> dict:
    start = time.monotonic()
    with Deployment(topo, kernel, image, choice, backend=backend) as deployment:
        ready = time.monotonic() - start
        handles = list(deployment.containers.values())
        for src in handles:
            for dst in handles:
                if src is not dst:
                    src.exec(f"ping -c 1 -W 5 {dst.address}", timeout=20, check=True)
        reachable = time.monotonic() - start
        return {"ready_s": round(ready, 2), "reachable_s": round(reachable, 2),
                "boot_s": {k: round(v, 2) for k, v in deployment.timings.boot.items()},
                "overlay_s": {k: round(v, 2) for k, v in deployment.timings.overlay.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="two-vm")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kernel", default="vanilla")
    parser.add_argument("--backend", default="qemu", choices=BACKENDS)
    parser.add_argument("--output", type=Path, default=Path("results/bench-topology.json"))
    args = parser.parse_args()

    topo = topology_mod.load(args.topology)
    kernel = obtain(args.kernel)
    image = build_image(load_spec())
    choice = accel_mod.choose("auto", kernel.bzimage)
    backend = Backend(args.backend)
    runs = [one_run(topo, kernel, image, choice, backend) for _ in range(args.runs)]

    table = Table(title=f"topology {topo.name} readiness ({kernel.release}, {choice.accel}, {backend.describe()})")
    for column in ("run", "ready", "every container reachable", "boots", "overlay set-up"):
        table.add_column(column)
    for i, run in enumerate(runs, 1):
        table.add_row(str(i), f"{run['ready_s']:.2f}s", f"{run['reachable_s']:.2f}s",
                      ", ".join(f"{k} {v:.1f}s" for k, v in run["boot_s"].items()),
                      ", ".join(f"{k} {v:.1f}s" for k, v in run["overlay_s"].items()))
    console.print(table)
    summary = {"topology": topo.name, "kernel": kernel.release, "accel": choice.as_dict(),
               "backend": backend.describe(), "runs": runs,
               "ready_median_s": statistics.median(r["ready_s"] for r in runs),
               "reachable_median_s": statistics.median(r["reachable_s"] for r in runs)}
    console.print(f"median: ready {summary['ready_median_s']:.2f}s, "
                  f"every container reachable {summary['reachable_median_s']:.2f}s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
