"""The shipped mix on every kernel: unloaded, then loaded in the regime PRISM is for.

These are the measurements the PRISM cases build on. The flood's rate is
calibrated on this host (the first deployment of the session that needs it),
and the loaded run must prove that the queue stood in the server's RPS CPU
backlog, with headroom before it (testbed.analysis.regime). Without PRISM acting
(vanilla, or prism with its mode off, the default), that queue must delay
priority probes well beyond their unloaded RTT: if it does not, the mix is
not loading the stage PRISM acts on, and these cases fail rather than let a
later "PRISM helps" mean nothing.
"""

from __future__ import annotations

import dataclasses

import pytest

from testbed import ABOVE, assert_intact, compare
from testbed.traffic.flows import CpuHogSpec

pytestmark = pytest.mark.vm

MIX = "overlay-flood"
RISE = 2.0  # loaded p99 / unloaded p99, at the low end of its 95% CI (measured: 2.6x to 12x)


@pytest.fixture(scope="module")
def flood(traffic):
    """The mix's unloaded twin, then the mix itself, on one deployment."""
    mix = traffic.mix(MIX)
    unloaded = traffic.run(mix.without_bulk())
    loaded = traffic.run_in_regime(mix)
    return unloaded, loaded


def test_unloaded_probes_arrive_intact(flood):
    unloaded, _ = flood
    assert unloaded.validity() is None
    for flow in unloaded.mix.probes:
        integrity = assert_intact(unloaded.results(), flow=flow.name)
        assert integrity.sent == flow.count


def test_the_loaded_run_holds_the_regime_inside_the_guest(flood):
    _, loaded = flood
    server = loaded.stages["server"]
    assert loaded.regime is not None and loaded.regime.valid, loaded.validity()
    assert loaded.regime.target_cpus == (1,) and loaded.queued_in_guest, server.where()
    # the flood arrived: the host offered what the calibration chose, and the guest's NIC took nearly all of it
    (report,) = loaded.floods
    assert report.achieved_pps > 0.9 * report.target_pps, report.to_dict()
    assert server.nic_rx > 0.9 * report.sent, server.where()


def test_loaded_priority_p99_rises_well_above_unloaded(flood):
    unloaded, loaded = flood
    c = compare(loaded.results().samples("priority"), unloaded.results().samples("priority"), 99)
    assert c.order == ABOVE and c.ratio_ci.low >= RISE, (
        f"loaded priority p99 is not {RISE:g}x the unloaded p99:\n{c.table()}\n{loaded.stages['server'].where()}")


def test_priority_integrity_under_load(flood, kernel):
    _, loaded = flood
    # Without PRISM a saturated backlog drops priority and bulk alike, and
    # replies that leave through two CPUs' backlogs overtake each other: loss
    # and reordering are reported here, not failed (the PRISM cases fail
    # them). None may be duplicated or damaged.
    integrity = assert_intact(loaded.results(), flow="priority", tolerate=("lost", "reordered"))
    # enough of them came back for a p99 to mean something
    assert integrity.received >= 100, integrity.table()


def test_a_cpu_hog_runs_with_the_load_and_stops_with_it(traffic):
    """A mix's CPU hog keeps its CPU busy while the probes run, and no busy loop outlives the run.

    Unloaded, the server's CPUs are 10-15 % busy; the hog takes its CPU
    from the moment crun has started it, a little into the window (80 %
    measured), so busy past half of the window is the hog.
    """
    mix = traffic.mix(MIX).without_bulk()
    hog = CpuHogSpec("busy", container="s1", cpus=(1,))
    run = traffic.run(dataclasses.replace(mix, name=f"{mix.name}-hog", hogs=(hog,)))
    busy = run.stages["server"].busy_share
    assert busy.get(1, 0) > 0.5, f"the hog did not keep the server's CPU 1 busy: {busy}"
    left = traffic.deployment.vm("server").run("pgrep -f 'while :; do :; don[e]'")  # [e]: not this shell
    assert left.exit_code == 1, f"the hog outlived its run: pids {left.stdout.split()}"
