"""Which run records a verdict counts, and why the others do not.

A loaded run counts only when its regime was checked valid and its prober
heard every reply that reached the host; a flow counts only when some of
its probes came back intact. Pure: it reads records, as testbed.analysis.rounds
and the reports do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..core.errors import VerdictError
from .records import ProbeRow, prober_problem
from .run_record import RunRecord
from .tail import Tail, tail_of


def round_of(record: RunRecord) -> int:
    r = record.round  # records from before rounds are each one round
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise VerdictError(f"{record.where()}: round {r!r} is not a round number (1, 2, ...)")
    return r


def run_problem(record: RunRecord) -> str | None:
    """Why a run cannot count (None: it can). A loaded run counts only when its regime was checked valid."""
    regime = record.regime
    if regime is None:
        if record.mix["loaded"]:
            return "no regime recorded, so the load was never checked"
    elif not isinstance(regime, Mapping) or not isinstance(regime.get("valid"), bool):
        raise VerdictError(f"{record.where()}: regime {regime!r} is not {{'valid': bool, 'why': str}}")
    elif not regime["valid"]:
        return regime.get("why") or "regime invalid (no reason recorded)"
    return prober_problem((record.prober or {}).get("receive_drops", 0))


def flow_problem(record: RunRecord, flow: str) -> str | None:
    f = record.flows[flow]
    if f.get("summary") is not None:
        return None
    sent = (f.get("integrity") or {}).get("sent")
    return f"flow {flow!r}: no probe came back intact" + ("" if sent is None else f" ({sent} sent)")


def excluded_runs(records: Iterable[RunRecord]) -> list[dict]:
    """Every run, or flow of a run, that the verdicts leave out, and why, in record order.

    attempt is the record's try of that round (None before retries existed):
    a round retried after an invalid regime shows its failed tries here.
    """
    out = []
    for r in records:
        entry = {"label": r.label, "boot": r.boot_no, "round": round_of(r), "attempt": r.attempt, "mix": r.mix["name"],
                 "loaded": r.mix["loaded"]}
        problem = run_problem(r)
        if problem is not None:
            out.append({**entry, "flow": None, "why": problem})
            continue
        out.extend({**entry, "flow": f, "why": why} for f in r.flows if (why := flow_problem(r, f)) is not None)
    return out


def loaded_mix(records: Sequence[RunRecord], mix: str | None) -> str:
    names = list(dict.fromkeys(r.mix["name"] for r in records if r.mix["loaded"]))
    if mix is not None:
        if mix not in names:
            raise VerdictError(f"no loaded runs of mix {mix!r} (have {', '.join(names) or 'none'})")
        return mix
    if len(names) != 1:
        raise VerdictError(f"loaded runs of {len(names)} mixes ({', '.join(names) or 'none'}): "
                           "verdicts over rounds compare one mix; pass mix=")
    return names[0]


def loaded_runs(records: Sequence[RunRecord], mix: str) -> dict[str, dict[tuple[int, int], RunRecord]]:
    """The valid loaded runs of the mix: label -> (boot, round) -> record, ascending; every label seen is a key."""
    out: dict[str, dict[tuple[int, int], RunRecord]] = {}
    for r in records:
        if not r.mix["loaded"] or r.mix["name"] != mix:
            continue
        runs = out.setdefault(r.label, {})
        if run_problem(r) is not None:
            continue
        key = (r.boot_no, round_of(r))
        if key in runs:
            raise VerdictError(f"{r.label} {mix} boot {key[0]} round {key[1]} is recorded twice "
                               f"({runs[key].where()}, {r.where()})")
        runs[key] = r
    return {label: dict(sorted(runs.items())) for label, runs in out.items()}


def value_of(record: RunRecord, flow: str, percentile: float) -> Tail | None:
    """The flow's percentile in the run over the probes it sent, a lost one counting as slower than any
    (testbed.analysis.tail); None when no probe came back intact (or the flow is not in the run)."""
    f = record.flows.get(flow)
    if f is None:
        return None
    if not 0 <= percentile <= 100:
        raise VerdictError(f"percentile {percentile} is outside 0..100")
    rows = [ProbeRow.from_list(p) for p in f.get("probes", [])]
    return tail_of((r.intact_rtt_ns / 1000 for r in rows if r.intact_rtt_ns is not None), len(rows), percentile)


def flows_of_class(runs: Iterable[RunRecord], cls: str) -> list[str]:
    return list(dict.fromkeys(f for r in runs for f, v in r.flows.items() if v["class"] == cls))
