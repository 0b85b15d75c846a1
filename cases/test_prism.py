"""PRISM against vanilla on the shipped mix: latency, integrity, modes, starvation, goodput, knobs.

Runs on a PRISM kernel (`--kernel prism`); the vanilla baseline is built
(or found in the cache) and measured in the same session on its own
deployment of the same topology, with the same mix. On a kernel without
PRISM's sysctls these cases are skipped with that reason.
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from testbed import FASTER, SLOWER, Deployment, Traffic, assert_intact, over_rounds
from testbed.build.kernel import obtain
from testbed.traffic import mix as mix_mod
from testbed.traffic import prism_knobs
from testbed.vm import accel as accel_mod

pytestmark = pytest.mark.vm

MIX = "overlay-flood"
# Every setting is measured and must keep the priority flows intact; the two
# modes without split must also beat vanilla and bulk. Split moves bulk out of
# the NIC's poll into the backlog, which loads the backlog's CPU further; its
# latency is recorded, not asserted.
SETTINGS = ["pseudo-sync", "sync", "pseudo-sync+split", "sync+split"]
FASTER_SETTINGS = ["pseudo-sync", "sync"]
# Latency is judged over rounds (testbed.analysis.rounds), not within one run: under
# TCG a run's p99 moves with the host more than a bootstrap over its probes
# admits. Each round runs every setting once, in turn, on one boot; vanilla
# runs as many rounds on its own boot. Every counted run proved its regime.
# As the experiment: with 3, pseudo-sync's round-to-round spread (p99 10.7-28.4 ms in one CI run)
# left the interval over 1 although every round was under half of vanilla's.
ROUNDS = 5
# The A/A setting: pseudo-sync on with no port and no DSCP listed, so nothing is marked
AA_SETTING = "pseudo-sync+empty"
ROUND_SETTINGS = ["off", *FASTER_SETTINGS, AA_SETTING]
_BASELINE = pytest.StashKey[dict]()


@pytest.fixture(scope="module")
def prism(request, deployment, kernel, accel):
    """The module's deployment on a PRISM kernel, with a recorder; skips on kernels without PRISM."""
    if not prism_knobs.has_prism(next(iter(deployment.machines.values()))):
        pytest.skip(f"kernel {kernel.variant} ({kernel.release}) has no PRISM sysctls")
    return Traffic(request, deployment, kernel, accel)


@pytest.fixture(scope="module")
def vanilla(request, guest_image, prism):
    """Vanilla's runs of the mix (unloaded, loaded rounds, goodput), once per session, on their own deployment."""
    cache = request.config.stash.setdefault(_BASELINE, {})
    if not cache:
        kernel = obtain("vanilla")
        choice = accel_mod.choose(request.config.getoption("accel"), kernel.bzimage)
        mix = mix_mod.load(MIX)
        with Deployment(prism.deployment.topology, kernel, guest_image, choice) as deployment:
            traffic = Traffic(request, deployment, kernel, choice)
            cache["unloaded"] = traffic.run(mix.without_bulk())
            cache["loaded"] = [traffic.run_in_regime(mix) for _ in range(ROUNDS)]
            cache["goodput"] = [traffic.run(goodput_mix(mix)) for _ in range(2)]
            cache["priority_flood"] = traffic.run(mix.with_priority_flood())
    return cache


def goodput_mix(mix: mix_mod.Mix) -> mix_mod.Mix:
    """Bulk TCP (iperf3, c1 -> s2) next to the priority probes, no flood: what PRISM costs bulk."""
    tcp = mix_mod.Iperf3Spec("bulk-tcp", "c1", "s2", protocol="tcp", size=1000)
    return dataclasses.replace(mix, name=f"{mix.name}-goodput", floods=(), hogs=(), iperf3=(tcp,))


_RUNS = pytest.StashKey[dict]()


def _run_setting(prism, setting_text: str):
    mix = mix_mod.load(MIX)
    setting = prism_knobs.parse_setting(setting_text)
    prism_knobs.apply(prism.deployment, setting, mix)
    return prism.run_in_regime(dataclasses.replace(mix, name=f"{mix.name}@{setting.label}"))


def rounds(request, prism) -> dict[str, list]:
    """The loaded mix on the PRISM kernel: ROUNDS rounds of ROUND_SETTINGS in turn, the split settings once.

    Measured once per module; every run held its regime (run_in_regime).
    """
    runs = request.config.stash.setdefault(_RUNS, {})
    key = prism.deployment.run_id
    if key not in runs:
        by_setting: dict[str, list] = {s: [] for s in SETTINGS + ROUND_SETTINGS}
        for _ in range(ROUNDS):
            for setting in ROUND_SETTINGS:
                by_setting[setting].append(_run_setting(prism, setting))
        for setting in SETTINGS:
            if not by_setting[setting]:
                by_setting[setting].append(_run_setting(prism, setting))
        runs[key] = by_setting
    return runs[key]


def p99s(runs, flow: str) -> list[float]:
    """The flow's p99 in each run; a run where none of its probes came back intact fails the case."""
    return [run.results().samples(flow).percentile(99) for run in runs]


def vanilla_p99s(runs, flow: str) -> list[float]:
    """Vanilla's p99 per round, leaving out a round where the flow stalled (no probe came back intact).

    Overloaded, vanilla can stall a TCP request/response flow outright: a
    request lost, its retransmissions lost, the backoff outlasting the
    window (one CI run: 1 request sent in a round). Such a round has no
    p99, so it does not count for that flow, as in the experiment's verdict
    (testbed.analysis.counted.flow_problem); the rounds left must still
    make an interval, and PRISM's own rounds may not stall at all (p99s).
    """
    return [samples.percentile(99) for run in runs if (samples := run.results().samples(flow)).rtts_us]


@pytest.mark.parametrize("setting", FASTER_SETTINGS)
def test_priority_p99_under_load_beats_vanilla(request, prism, vanilla, setting):
    """Over rounds, each priority flow's p99 is below vanilla's: the interval is clear of 1 and the effect real."""
    mine = rounds(request, prism)[setting]
    failures = []
    for flow in mine[0].mix.flows_of(mix_mod.PRIORITY):
        v = over_rounds(flow.name, setting, p99s(mine, flow.name), "vanilla", vanilla_p99s(vanilla["loaded"], flow.name))
        if v.verdict != FASTER:
            failures.append(f"{flow.name}: {v.verdict}, ratio {v.ratio:.3f} {v.ci.text(3)}, "
                            f"p99 ms {_ms(v.a_values)} vs vanilla {_ms(v.b_values)}")
    assert not failures, f"{setting} against vanilla over {ROUNDS} rounds:\n" + "\n".join(failures)


@pytest.mark.parametrize("setting", FASTER_SETTINGS)
def test_priority_beats_bulk_in_the_same_runs(request, prism, setting):
    mine = rounds(request, prism)[setting]
    v = over_rounds("priority", setting, p99s(mine, "priority"), setting, p99s(mine, "bulk"), paired=True)
    assert v.verdict == FASTER, (f"{setting}: priority p99 not below bulk's in the same runs: ratio {v.ratio:.3f} "
                                 f"{v.ci.text(3)}, ms {_ms(v.a_values)} vs bulk {_ms(v.b_values)}")


def _ms(values) -> str:
    return ", ".join(f"{v / 1000:.1f}" for v in values)


def loaded_run(request, prism, setting_text: str):
    """The first loaded run of the mix on the PRISM kernel in one setting."""
    return rounds(request, prism)[setting_text][0]


@pytest.mark.parametrize("setting", SETTINGS)
def test_priority_arrives_intact_under_load(request, prism, setting):
    run = loaded_run(request, prism, setting)
    server = run.stages["server"]
    assert run.validity() is None, run.validity()
    assert run.queued_in_guest, server.where()
    priority = run.mix.flows_of(mix_mod.PRIORITY)
    for flow in priority:
        assert_intact(run.results(), flow=flow.name, tolerate=("lost",))  # never duplicated, reordered, damaged
    # A probe the host's own FIFO queues dropped (tap, host backlog: testbed.traffic.hostdrops) was never
    # the guest's to protect; every other lost priority probe is the kernel's.
    lost = {f.name: (run.results().integrity(f.name).lost, run.lost_at_host(f.name)) for f in priority}
    beyond_host = {name: total - at_host for name, (total, at_host) in lost.items() if total > at_host}
    assert not beyond_host, (f"{setting}: priority probes lost beyond the host (lost, of which on the host): "
                             f"{lost}; host drops {run.host_drops}; {server.where()}")


def _bulk_delivered(run) -> float:
    """Bulk datagrams the sink containers took per second of flood."""
    sinks = {f.dst for f in run.mix.floods}
    delivered = sum(s.sockets.get(c, {}).get("InDatagrams", 0) for s in run.stages.values() for c in sinks)
    return delivered / run.floods[0].seconds


def _target_backlog_drops(run) -> float:
    return float(run.regime.backlog_drops) + 1  # +1: a ratio over rounds needs no zero (as much for both)


def test_prism_with_nothing_listed_measures_like_mode_off(request, prism):
    """A/A: pseudo-sync with empty sets marks nothing, so over interleaved rounds it is not worse than off.

    What the mode costs by itself (its poll loop, hooks and classifier on
    every packet) shows here: more backlog drops on the RPS target CPU,
    less bulk delivered, or a higher priority or bulk p99 than off at the
    same offered rate. Each is judged over rounds like the verdict: a
    difference counts only with its interval clear of 1 and at least a tenth.
    """
    runs = rounds(request, prism)
    aa, off = runs[AA_SETTING], runs["off"]
    for run in aa:
        stat = run.stages["server"].prism_stat
        assert stat.get("classified", 0) == 0 and stat.get("prio_enqueued", 0) == 0, f"{AA_SETTING} marked: {stat}"
    worse = []
    for what, higher_is_worse, value in [("priority p99", True, lambda r: r.results().samples("priority").percentile(99)),
                                         ("bulk p99", True, lambda r: r.results().samples("bulk").percentile(99)),
                                         ("cpu backlog drops", True, _target_backlog_drops),
                                         ("bulk delivered/s", False, _bulk_delivered)]:
        v = over_rounds(what, AA_SETTING, [value(r) for r in aa], "off", [value(r) for r in off])
        if v.verdict == (SLOWER if higher_is_worse else FASTER):
            worse.append(f"{what}: ratio {v.ratio:.3f} {v.ci.text(3)}; {AA_SETTING} "
                         f"{_values(v.a_values)} vs off {_values(v.b_values)}")
    assert not worse, f"PRISM with nothing listed is worse than off over {ROUNDS} rounds:\n" + "\n".join(worse)


def _values(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


OFF_LIKE_VANILLA = 2.0  # mode off's p99 within this factor of vanilla's, over rounds (different boots)


def test_mode_off_measures_like_vanilla(request, prism, vanilla):
    """Off, the PRISM kernel's loaded priority p99 is vanilla's, within the spread of two boots."""
    off = rounds(request, prism)["off"]
    v = over_rounds("priority", "prism-off", p99s(off, "priority"), "vanilla", vanilla_p99s(vanilla["loaded"], "priority"))
    assert 1 / OFF_LIKE_VANILLA <= v.ratio <= OFF_LIKE_VANILLA, (
        f"mode off differs from vanilla: ratio {v.ratio:.3f} {v.ci.text(3)}, ms {_ms(v.a_values)} vs "
        f"{_ms(v.b_values)}")


def test_mode_off_leaves_every_packet_alone(request, prism):
    """Off, nothing is classified, queued apart or run to completion: the hooks are patched-out branches."""
    run = loaded_run(request, prism, "off")
    stat = run.stages["server"].prism_stat
    assert stat and not any(stat.values()), stat


STARVATION_FLOOR = 0.2  # of the bulk probes sent, at least this share must return


@pytest.mark.parametrize("setting", ["pseudo-sync", "sync"])
def test_a_priority_flood_cannot_starve_bulk(request, prism, vanilla, setting):
    """With every flood packet classified priority, the backlog's quota still serves the normal queue.

    Without a quota the normal queue would be served only when the priority
    queue is empty, which a flood above capacity never lets happen: bulk
    would get nothing. The floor is a fifth of bulk's probes: far from
    zero, and below what a saturated TCG receiver delivers to bulk on
    vanilla under the same flood (measured alongside, for the message).
    In sync mode too: run to completion ends at the veth, whose receive
    side is the priority backlog (the series' first sync mode ran the
    flood on to the socket in the NIC's poll, past any quota).
    """
    mix = mix_mod.load(MIX)
    prism_knobs.apply(prism.deployment, prism_knobs.parse_setting(setting), mix)
    run = prism.run(mix.with_priority_flood())
    bulk = run.results().integrity("bulk")
    base = vanilla["priority_flood"].results().integrity("bulk")
    assert bulk.received >= STARVATION_FLOOR * bulk.sent, (
        f"{setting}: bulk starved under a priority flood: {bulk.received}/{bulk.sent} returned "
        f"(vanilla under the same flood: {base.received}/{base.sent}); {run.stages['server'].where()}; "
        f"prism_stat {run.stages['server'].prism_stat}")
    assert run.stages["server"].prism_stat.get("quota_yield", 0) > 0, run.stages["server"].prism_stat


GOODPUT_FLOOR = 0.5  # of vanilla's: below this PRISM broke bulk, whatever the host's noise


def test_bulk_goodput_within_ten_percent_of_vanilla(request, prism, vanilla, accel):
    """PRISM costs bulk TCP at most a tenth of its goodput; never half of it.

    Under TCG the two deployments' goodput differs from run to run by more
    than a tenth (one CI run measured prism 96.5 Mbit/s against vanilla's
    123.4), so there the tenth is reported as xfail with its numbers and
    only the floor is asserted; with KVM both are.
    """
    mix = mix_mod.load(MIX)
    prism_knobs.apply(prism.deployment, prism_knobs.parse_setting("sync"), mix)
    ours_runs = [prism.run(goodput_mix(mix)).iperf3[0].bits_per_second for _ in range(2)]
    theirs_runs = [r.iperf3[0].bits_per_second for r in vanilla["goodput"]]
    ours, theirs = statistics.median(ours_runs), statistics.median(theirs_runs)
    figures = (f"bulk TCP goodput {ours / 1e6:.1f} Mbit/s on prism (runs {_mbit(ours_runs)}) vs "
               f"{theirs / 1e6:.1f} on vanilla (runs {_mbit(theirs_runs)})")
    assert ours >= GOODPUT_FLOOR * theirs, figures
    if ours < 0.9 * theirs:
        if accel.accel == "tcg":
            pytest.xfail(f"{figures}: under TCG the spread between runs exceeds a tenth")
        pytest.fail(figures)


def _mbit(values: list[float]) -> str:
    return ", ".join(f"{v / 1e6:.1f}" for v in values)


BAD_VALUES = [("prism_mode", "3"), ("prism_mode", "-1"), ("prism_ports", "70000"), ("prism_ports", "9-5"),
              ("prism_dscp", "64"), ("prism_vxlan_port", "65536"), ("prism_split", "2"), ("prism_quota", "0")]


@pytest.mark.parametrize(("knob", "value"), BAD_VALUES)
def test_bad_sysctl_values_are_rejected(prism, knob, value):
    vm = prism.deployment.vm("server")
    path = f"/proc/sys/net/core/{knob}"
    before = vm.run(f"cat {path}", check=True).stdout
    # sysctl(8) reports the write's errno (dash's echo says "I/O error" for any failed write)
    result = vm.run(["sysctl", "-w", f"net.core.{knob}={value}"])
    assert result.exit_code != 0 and "Invalid argument" in result.stderr, (result.exit_code, result.stderr)
    assert vm.run(f"cat {path}", check=True).stdout == before


def test_good_sysctl_values_read_back(prism):
    vm = prism.deployment.vm("server")
    for knob, value, shown in [("prism_ports", "7007,8000-8010", "7007,8000-8010"), ("prism_dscp", "46,48-50", "46,48-50"),
                               ("prism_mode", "2", "2"), ("prism_quota", "16", "16"), ("prism_vxlan_port", "4789", "4789")]:
        vm.run(f"echo '{value}' > /proc/sys/net/core/{knob}", check=True)
        assert vm.run(f"cat /proc/sys/net/core/{knob}", check=True).stdout.strip() == shown
    vm.run("echo 0 > /proc/sys/net/core/prism_mode; echo 64 > /proc/sys/net/core/prism_quota", check=True)
