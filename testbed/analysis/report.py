"""Reports: one JSON record per run, a rich table, a latency CDF plot, merged comparisons.

A run record holds everything needed to judge the run again later without
the VMs: every probe's RTT and flags, every bulk report and stage counter,
the topology, the kernel's build metadata, the accelerator and vhost, and
the host's load. `prism-testbed report DIR…` reads any number of records
(several kernels, several runs) and prints one comparison; nothing in it
depends on the run that wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich.table import Table

from ..core.cache import atomic_write_text
from ..core.errors import ConfigError
from . import breakdown, record_schema, regime_report
from .latency import FlowSamples, compare, percentile, summarize
from .records import ProbeRow
from .run_record import SCHEMA, RunRecord


def calibration_tables(calibration: dict) -> list[Table]:
    """A ramp table per kernel (an experiment's document holds one per kernel)."""
    tables = []
    for one in regime_report.calibrations_of(calibration):
        rows_ = regime_report.calibration_rows(one)
        tables.append(_rich(regime_report.calibration_title(one), rows_[0], rows_[1:]))
    return tables


def run_record(run, *, kernel, accel, topology, case: str = "", label: str | None = None) -> RunRecord:
    """The JSON record of one MixRun (testbed.traffic.run) on one kernel.

    label names the condition in tables (default: the kernel's variant;
    the experiment uses e.g. prism-sync for one PRISM mode).
    """
    results = run.results()
    flows = {}
    for probe in run.mix.probes:
        records = results.records(probe.name)
        samples = results.samples(probe.name)
        lateness = sorted(run.probes.lateness_ns.get(probe.name, []))
        flows[probe.name] = {
            "class": run.mix.classes[probe.name], "protocol": probe.protocol, "dst": probe.dst, "dport": probe.dport,
            "dscp": probe.dscp, "size": probe.size, "rate": probe.rate,
            "summary": summarize(samples).to_dict() if samples.count else None,
            "integrity": results.integrity(probe.name).to_dict(),
            "lost_at_host": run.lost_at_host(probe.name),  # of integrity's lost: sent just before a host drop
            "skipped": run.probes.skipped.get(probe.name, 0),
            "send_lateness_us": {"p50": _lateness_us(lateness, 50), "p99": _lateness_us(lateness, 99),
                                 "max": (lateness[-1] if lateness else 0) / 1000},
            "breakdown": breakdown.record_fields(records),
            "probes": [list(ProbeRow.of(r, breakdown.probe_stamps(r))) for r in records],  # rows: ProbeRow
        }
    return RunRecord(
        case=case,
        label=label or kernel.variant,
        mix={"name": run.mix.name, "loaded": run.mix.loaded, "origin": run.mix.origin,
             "description": run.mix.description, "settle": run.mix.settle,
             "floods": [dataclasses.asdict(f) for f in run.mix.floods],
             "iperf3": [dataclasses.asdict(i) for i in run.mix.iperf3],
             "tuning": {vm: dataclasses.asdict(t) for vm, t in run.mix.tuning.items()}},
        kernel={"variant": kernel.variant, "release": kernel.release, "bzimage": str(kernel.bzimage),
                "metadata": kernel.metadata},
        accel=accel.as_dict(),
        topology=dataclasses.asdict(topology),
        host={"loadavg_before": run.host_load[0], "loadavg_after": run.host_load[1], "cpus": os.cpu_count(),
              "kernel": platform.release()},
        seconds=round(run.seconds, 2),
        flows=flows,
        floods=[f.to_dict() for f in run.floods],
        prober={"foreign": run.probes.foreign, "receive_drops": run.probes.receive_drops},
        host_drops=run.host_drops,
        host_drop_timeline=[d.as_list() for d in run.host_drop_timeline],  # [t_ns, where, count]
        iperf3=[i.to_dict() for i in run.iperf3],
        stages={vm: s.to_dict() for vm, s in run.stages.items()},
        regime=run.regime.to_dict() if run.regime else None,
        validity=run.validity(),
    )


def _lateness_us(lateness_ns: Sequence[int], p: float) -> float:
    """A percentile of the sender's lateness in µs (latency's one definition; 0 with no probes)."""
    return percentile(lateness_ns, p) / 1000 if lateness_ns else 0.0


def write_record(record: RunRecord, directory: Path, stem: str) -> Path:
    """record as DIR/STEM.json, written whole or not at all; the record remembers where (record.path)."""
    path = write_json(directory / f"{_safe(stem)}.json", record.to_dict())
    record.path = str(path)
    return path


def write_json(path: Path, data: dict) -> Path:
    """data as JSON at path, written whole or not at all."""
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def load_records(paths: Iterable[Path], *, skipped: list[str] | None = None) -> list[RunRecord]:
    """Every run record in the given files and directories (searched recursively).

    A file that is a record but cannot be read or compared (truncated,
    missing a field) is an error naming it; with `skipped` given, it is
    listed there ("path why") and left out instead. JSON files that are not
    records (session.json, calibration, verdict) are passed over.
    """
    records = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"report: {path} does not exist")
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for f in files:
            problem, data = _read_record(f, explicit=not path.is_dir())
            if problem is None and data is None:
                continue
            if problem is not None:
                if skipped is None:
                    raise ConfigError(f"report: {f} {problem} (--skip-bad leaves such records out)")
                skipped.append(f"{f} {problem}")
                continue
            records.append(RunRecord.from_dict(data, path=str(f)))
    if not records:
        raise ConfigError(f"report: no run records ({SCHEMA}) in {', '.join(str(p) for p in paths)}")
    return records


def _read_record(f: Path, *, explicit: bool) -> tuple[str | None, dict | None]:
    """(problem, record): (None, None) for a JSON file that is not a run record."""
    try:
        text = f.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read: {exc}", None
    try:
        data = json.loads(text)
    except ValueError as exc:
        # a record is written with its schema first: a truncated one still says what it was
        if explicit or f'"schema": "{SCHEMA}"' in text[:200]:
            return f"is not a JSON run record: {exc}", None
        return None, None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return (f"is not a run record ({SCHEMA})", None) if explicit else (None, None)
    problem = record_schema.problem(data)
    return (f"is a damaged run record: {problem}", None) if problem else (None, data)


def recorded_baseline(paths: Iterable[Path]) -> str | None:
    """The baseline an experiment's verdict.json names, when exactly one of the paths holds one."""
    found = set()
    for path in paths:
        for f in ([path / "verdict.json"] if path.is_dir() else []):
            try:
                found.add(json.loads(f.read_text()).get("design", {}).get("baseline"))
            except (OSError, ValueError, AttributeError):
                continue
    found.discard(None)
    return found.pop() if len(found) == 1 else None


def samples_of(record: RunRecord, flow: str) -> FlowSamples:
    """RTTs (microseconds) of a flow's intact probes, from the record's raw probes."""
    rows = [ProbeRow.from_list(p) for p in record.flows[flow]["probes"]]
    return FlowSamples(f"{record.label}/{record.mix['name']}/{flow}",
                       tuple(r.intact_rtt_ns / 1000 for r in rows if r.intact_rtt_ns is not None), sent=len(rows))


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _ci(interval: dict | None) -> str:
    if not interval or interval.get("low") is None or interval.get("high") is None:
        return ""
    return f" [{interval['low'] / 1000:.2f}, {interval['high'] / 1000:.2f}]"


def rows(records: list[RunRecord]) -> list[list[str]]:
    """One row per (kernel, mix, flow): the numbers every report shows."""
    out = []
    for r in records:
        for name, flow in r.flows.items():
            s, i = flow["summary"] or {}, flow["integrity"]
            out.append([r.label, r.mix["name"], name, flow["class"], str(i["received"]),
                        _ms(s.get("p50")) + _ci(s.get("p50_ci")), _ms(s.get("p90")),
                        _ms(s.get("p99")) + _ci(s.get("p99_ci")), _ms(s.get("p999")), _ms(s.get("max")),
                        f"{i['lost']}/{i['duplicated']}/{i['reordered']}/{i['corrupted']}"])
    return out


def _ms_ci(summary: dict | None, key: str) -> str:
    if not summary:
        return "-"
    return _ms(summary.get(key)) + _ci(summary.get(f"{key}_ci"))


def condition_rows(records: list[RunRecord], flow: str | None = None) -> list[list[str]]:
    """The paper-style table: per condition, the flow unloaded and loaded, loss, bulk delivered, softirq.

    flow: the first priority-class flow unless named, whatever the mix calls it.
    """
    flow = flow or regime_report.first_of_class(records, "priority")
    by_label: dict[str, dict[str, RunRecord]] = {}
    for r in records:
        if flow in r.flows:
            by_label.setdefault(r.label, {})["loaded" if r.mix["loaded"] else "unloaded"] = r
    out = []
    for label, runs in by_label.items():
        un, lo = runs.get("unloaded"), runs.get("loaded")
        su = un.flows[flow]["summary"] if un else None
        sl = lo.flows[flow]["summary"] if lo else None
        lost = lo.flows[flow]["integrity"] if lo else None
        bulk = softirq = "-"
        if lo:
            stages = list(lo.stages.values())
            sinks = {f["dst"] for f in lo.mix["floods"]}
            delivered = sum(s["sockets"].get(c, {}).get("InDatagrams", 0) for s in stages for c in sinks)
            bulk = f"{delivered / lo.floods[0]['seconds']:.0f}" if lo.floods and lo.floods[0]["seconds"] else "-"
            softirq = " ".join(f"{int(v * 100)}%" for s in stages for _, v in sorted(s.get("softirq_share", {}).items()))
        out.append([label, _ms(su.get("mean")) if su else "-", _ms_ci(su, "p50"), _ms_ci(su, "p99"),
                    _ms(sl.get("mean")) if sl else "-", _ms_ci(sl, "p50"), _ms_ci(sl, "p99"),
                    f"{lost['lost']}/{lost['sent']}" if lost else "-", bulk, softirq or "-"])
    return out


CONDITION_HEADER = ["condition", "unloaded avg ms", "unloaded p50 ms", "unloaded p99 ms", "loaded avg ms",
                    "loaded p50 ms", "loaded p99 ms", "lost (loaded)", "bulk delivered pps", "softirq per cpu"]


def stage_rows(records: list[RunRecord]) -> list[list[str]]:
    """One row per loaded run and receiving VM: did the load load, and where did it queue and drop."""
    out = []
    for r in records:
        if not r.mix["loaded"]:
            continue
        offered = sum(f["achieved_pps"] for f in r.floods)
        goodput = sum(i["bits_per_second"] for i in r.iperf3) / 1e6
        for vm, s in r.stages.items():
            soft = s["softnet"]
            out.append([r.label, r.mix["name"], vm, f"{offered:.0f}", f"{goodput:.1f}" if r.iperf3 else "-",
                        str(s["peak_backlog"]), f"{s['host_tap']['dropped']}", str(sum(s["gro_cells_dropped"].values())),
                        str(soft.get("dropped", 0)), str(sum(x.get("RcvbufErrors", 0) for x in s["sockets"].values())),
                        str(soft.get("time_squeeze", 0)),
                        " ".join(f"{int(v * 100)}%" for _, v in sorted(s.get("softirq_share", {}).items())) or "-",
                        "invalid" if r.validity else ("guest" if s.get("queued_in_guest") else "none standing")])
    return out


STAGE_HEADER = ["kernel", "mix", "vm", "flood pps", "iperf3 Mbit/s", "peak backlog", "tap drops", "gro_cells drops",
                "backlog drops", "socket drops", "squeeze", "softirq per cpu", "queue in"]


HEADER = ["kernel", "mix", "flow", "class", "n", "p50 ms [95% CI]", "p90 ms", "p99 ms [95% CI]", "p99.9 ms",
          "max ms", "lost/dup/reord/corrupt"]


def comparisons(records: list[RunRecord], percentile: float = 99) -> list[list[str]]:
    """Within each run: priority against bulk, and the loaded run against its unloaded twin, per flow.

    Descriptions of those runs' probes (testbed.analysis.latency.compare), not
    verdicts: kernels are judged over boots (testbed.analysis.rounds), never from
    a bootstrap over one run's probes.
    """
    out = []
    by_key = {(r.label, r.mix["name"]): r for r in records}
    for (kernel, mix), r in sorted(by_key.items()):
        classes = {f: v["class"] for f, v in r.flows.items()}
        bulk = next((f for f, c in classes.items() if c == "bulk"), None)
        for flow in r.flows:
            pairs = []
            if bulk and classes[flow] == "priority":
                pairs.append((f"{flow} vs {bulk} (same run)", r, r))
            twin = by_key.get((kernel, f"{mix}-unloaded"))
            if twin and flow in twin.flows:
                pairs.append(("loaded vs unloaded", r, twin))
            for what, a, b in pairs:
                other = bulk if a is b else flow
                try:
                    c = compare(samples_of(a, flow), samples_of(b, other), percentile)
                except Exception as exc:  # no samples on one side: say so in the table
                    out.append([mix, flow, kernel, what, "-", "-", str(exc)])
                    continue
                out.append([mix, flow, kernel, what, f"{c.ratio:.3f}", c.ratio_ci.text(3), c.order])
    return out


COMPARISON_HEADER = ["mix", "flow", "kernel", "comparison", "p99 ratio", "95% bootstrap CI", "a in these probes"]


def _rich(title: str, header: list[str], body: list[list[str]]) -> Table:
    table = Table(title=title, header_style="bold")
    for h in header:
        table.add_column(h, overflow="fold")
    for row in body:
        table.add_row(*row)
    return table


def _repeated(records: list[RunRecord]) -> bool:
    """Records of an experiment: a condition measured in more than one round or boot."""
    return any(r.round > 1 or r.boot_no > 1 for r in records)


def rich_tables(records: list[RunRecord], baseline: str | None = None) -> list[Table]:
    if regime_report.has_rounds(records) and _repeated(records):
        # an experiment over rounds: the per-run tables would repeat every round; the evidence says more
        return [_rich(title, body[0], body[1:]) for title, body in regime_report.sections(records, baseline=baseline)]
    tables = [_rich("priority and bulk latency (RTT)", HEADER, rows(records)),
              _rich("priority flow by condition (RTT, 95% CI)", CONDITION_HEADER, condition_rows(records))]
    stages = stage_rows(records)
    if stages:
        tables.append(_rich("loaded runs: where the queue formed and what dropped", STAGE_HEADER, stages))
    comp = comparisons(records)
    if comp:
        tables.append(_rich("within each run (a/b at p99 over its probes: a description of the run, not a verdict)",
                            COMPARISON_HEADER, comp))
    tables += [_rich(title, body[0], body[1:]) for title, body in regime_report.sections(records, over_rounds=False)]
    return tables


def markdown(records: list[RunRecord], baseline: str | None = None) -> str:
    def table(header: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines)
    parts = ["### PRISM testbed: priority flow by condition", "", table(CONDITION_HEADER, condition_rows(records)),
             "", "### Every flow", "", table(HEADER, rows(records))]
    stages = stage_rows(records)
    if stages:
        parts += ["", "### Loaded runs: where the queue formed", "", table(STAGE_HEADER, stages)]
    comp = comparisons(records)
    if comp:
        parts += ["", "### Comparisons at p99", "", table(COMPARISON_HEADER, comp)]
    for title, body in regime_report.sections(records, over_rounds=_repeated(records), baseline=baseline):
        parts += ["", f"### {title}", "", table(body[0], body[1:])]
    return "\n".join(parts) + "\n"


def cdf_plot(records: list[RunRecord], path: Path, title: str = "RTT CDF") -> Path:
    """One CDF curve per (kernel, mix, flow), log-scaled RTT, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for r in records:
        for flow in r.flows:
            xs = sorted(samples_of(r, flow).rtts_us)
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            style = "-" if r.flows[flow]["class"] == "priority" else "--"
            ax.step([x / 1000 for x in xs], ys, style, where="post",
                    label=f"{r.label} {r.mix['name']} {flow}")
    ax.set_xscale("log")
    ax.set_xlabel("round-trip time (ms, log scale)")
    ax.set_ylabel("fraction of probes")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
