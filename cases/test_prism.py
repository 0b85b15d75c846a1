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

from testbed import FASTER, SLOWER, Deployment, Traffic, assert_intact, judge, over_rounds
from testbed.analysis.judge import BOOT
from testbed.analysis.tail import Tail
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
# As the experiment judges (testbed.analysis.judge): PRISM against vanilla over boots, the
# unit that repeats independently between two kernels (one boot's rounds share its level);
# settings of the PRISM kernel against each other round by round on the same boots. PRISM
# is booted PRISM_BOOTS times (the module's deployment is the first), vanilla VANILLA_BOOTS
# times; each boot runs ROUNDS_PER_BOOT rounds, every setting once a round in a rotating
# order, and every counted run proved its regime. A p99 is over the probes sent: a lost
# probe is slower than any.
# Why 5 x 1 and 3 x 1: the interval's width is set by the boots. PRISM's p99 varies by
# boot (host stalls of a busy 2-core host set its tail: 36, 229 and 166 ms over three
# boots of two rounds in one CI run), vanilla's hardly at all (its backlog is full: 933,
# 947, 946 ms). With three boots of two rounds the interval was [0.010, 1.385] around a
# ratio of 0.117 (Welch, about 2 degrees of freedom, t = 4.3): no verdict on a tenfold
# effect. Five PRISM boots of one round each cost about as much and give 4 degrees of
# freedom (t = 2.8) and a standard error 10-23 % smaller; vanilla, steady, needs
# fewer. Rounds within a boot add little: they share the boot's level.
PRISM_BOOTS = 5
VANILLA_BOOTS = 3
ROUNDS_PER_BOOT = 1
# The A/A setting: pseudo-sync on with no port and no DSCP listed, so nothing is marked
AA_SETTING = "pseudo-sync+empty"
ROUND_SETTINGS = ["off", *FASTER_SETTINGS, AA_SETTING]
_BASELINE = pytest.StashKey[dict]()


@pytest.fixture(scope="module")
def prism(request, deployment, kernel, accel):
    """The module's deployment on a PRISM kernel, with a recorder; skips on kernels without PRISM."""
    if not prism_knobs.has_prism(next(iter(deployment.machines.values()))):
        pytest.skip(f"kernel {kernel.variant} ({kernel.release}) has no PRISM sysctls")
    traffic = Traffic(request, deployment, kernel, accel)
    # one rate with headroom in every setting measured here, vanilla's runs included
    traffic.calibrate_settings(mix_mod.load(MIX), ["pseudo-sync", "sync"])
    return traffic


@pytest.fixture(scope="module")
def vanilla(request, guest_image, prism):
    """Vanilla's runs of the mix, once per session: VANILLA_BOOTS boots of ROUNDS_PER_BOOT loaded rounds
    ("loaded": a list per boot); the first boot also runs the unloaded mix, goodput and a priority flood."""
    cache = request.config.stash.setdefault(_BASELINE, {})
    if not cache:
        kernel = obtain("vanilla", None, request.config.getoption("kernel_source", None))
        choice = accel_mod.choose(request.config.getoption("accel"), kernel.bzimage)
        mix = mix_mod.load(MIX)
        cache["loaded"] = []
        for boot in range(VANILLA_BOOTS):
            with Deployment(prism.deployment.topology, kernel, guest_image, choice) as deployment:
                traffic = Traffic(request, deployment, kernel, choice)
                if boot == 0:
                    cache["unloaded"] = traffic.run(mix.without_bulk())
                    cache["goodput"] = [traffic.run(goodput_mix(mix)) for _ in range(2)]
                    cache["priority_flood"] = traffic.run(mix.with_priority_flood())
                cache["loaded"].append([_in_regime(traffic, mix) for _ in range(ROUNDS_PER_BOOT)])
    return cache


def goodput_mix(mix: mix_mod.Mix) -> mix_mod.Mix:
    """Bulk TCP (iperf3, c1 -> s2) next to the priority probes, no flood: what PRISM costs bulk."""
    tcp = mix_mod.Iperf3Spec("bulk-tcp", "c1", "s2", protocol="tcp", size=1000)
    return dataclasses.replace(mix, name=f"{mix.name}-goodput", floods=(), hogs=(), iperf3=(tcp,))


_RUNS = pytest.StashKey[dict]()


@dataclasses.dataclass(frozen=True)
class Missed:
    """A round in which no try held the regime: it counts for nothing, as in the experiment, and says why."""

    why: str


def _in_regime(traffic: Traffic, mix: mix_mod.Mix):
    try:
        return traffic.run_in_regime(mix)
    except AssertionError as exc:
        return Missed(str(exc))


def held(runs: list) -> list:
    """The runs that held their regime."""
    return [r for r in runs if not isinstance(r, Missed)]


def missed(boots: list[list]) -> str:
    lost = [r.why.splitlines()[-1] for runs in boots for r in runs if isinstance(r, Missed)]
    return f"; {len(lost)} round(s) missed the regime: {lost}" if lost else ""


def _run_setting(traffic: Traffic, setting_text: str):
    mix = mix_mod.load(MIX)
    setting = prism_knobs.parse_setting(setting_text)
    prism_knobs.apply(traffic.deployment, setting, mix)
    return _in_regime(traffic, dataclasses.replace(mix, name=f"{mix.name}@{setting.label}"))


def _rounds_on(traffic: Traffic, boot: int, by_setting: dict[str, list]) -> None:
    runs: dict[str, list] = {s: [] for s in ROUND_SETTINGS}
    for round_no in range(ROUNDS_PER_BOOT):
        shift = (round_no + boot) % len(ROUND_SETTINGS)
        for setting in ROUND_SETTINGS[shift:] + ROUND_SETTINGS[:shift]:
            runs[setting].append(_run_setting(traffic, setting))
    for setting, mine in runs.items():
        by_setting[setting].append(mine)


def rounds(request, prism) -> dict[str, list[list]]:
    """The loaded mix on the PRISM kernel: setting -> one list of runs per boot (PRISM_BOOTS boots,
    ROUNDS_PER_BOOT rounds of ROUND_SETTINGS each; the split settings once, on the first boot).

    Measured once per module; every run held its regime (run_in_regime).
    """
    runs = request.config.stash.setdefault(_RUNS, {})
    key = prism.deployment.run_id
    if key not in runs:
        by_setting: dict[str, list[list]] = {s: [] for s in SETTINGS + ROUND_SETTINGS}
        _rounds_on(prism, 0, by_setting)
        for setting in SETTINGS:
            if not by_setting[setting]:
                by_setting[setting].append([_run_setting(prism, setting)])
        image = request.getfixturevalue("guest_image")
        for boot in range(1, PRISM_BOOTS):
            with Deployment(prism.deployment.topology, prism.kernel, image, prism.accel) as deployment:
                _rounds_on(Traffic(request, deployment, prism.kernel, prism.accel), boot, by_setting)
        runs[key] = by_setting
    return runs[key]


def tails(boots: list[list], flow: str, p: float = 99) -> list[list[Tail]]:
    """The flow's percentile over the probes sent, per run, grouped by boot; lost probes count.

    A run in which none of the flow's probes came back intact (vanilla,
    overloaded, can stall a TCP request/response flow outright: a request
    lost, its retransmissions lost, the backoff outlasting the window) counts
    as the experiment counts it (testbed.analysis.rounds): a lower bound, the
    slowest probe the same condition brought back in any run.
    """
    boots = [held(runs) for runs in boots]
    got = [[run.results().tail(flow, p) if run.results().samples(flow).rtts_us else None for run in runs]
           for runs in boots]
    known = [t.value for runs in got for t in runs if t is not None]
    if not known:
        return [[] for _ in boots]  # nothing came back anywhere: no value, not even a bound
    return [[t if t is not None else Tail(max(known), True, len(run.results().records(flow)),
                                          len(run.results().records(flow)))
             for t, run in zip(runs, boot_runs, strict=True)] for runs, boot_runs in zip(got, boots, strict=True)]


def flat(boots: list[list]) -> list:
    """Runs of every boot in one list, boot by boot and round by round (a missed round included, so
    that pairs line up across settings)."""
    return [run for runs in boots for run in runs]


def paired(a: list[list], b: list[list]) -> tuple[list, list]:
    """The rounds in which both settings held their regime, as two lists that line up."""
    both = [(x, y) for x, y in zip(flat(a), flat(b), strict=True) if not isinstance(x, Missed | type(None))
            and not isinstance(y, Missed | type(None))]
    return [x for x, _ in both], [y for _, y in both]


@pytest.mark.parametrize("setting", FASTER_SETTINGS)
def test_priority_p99_under_load_beats_vanilla(request, prism, vanilla, setting):
    """Over boots, each priority flow's p99 is below vanilla's: the whole interval under 1 - a tenth."""
    mine = rounds(request, prism)[setting]
    failures = []
    for flow in mix_mod.load(MIX).flows_of(mix_mod.PRIORITY):
        v = judge(flow.name, setting, tails(mine, flow.name), "vanilla", tails(vanilla["loaded"], flow.name), unit=BOOT)
        if v.verdict != FASTER:
            failures.append(f"{flow.name}: {v.verdict} ({v.reason}), ratio {v.ratio:.3f} {v.ci.text(3)}, "
                            f"p99 ms by boot {_ms(v.a_values)} vs vanilla {_ms(v.b_values)}, lost {v.loss}"
                            + missed(mine) + missed(vanilla["loaded"]))
    assert not failures, f"{setting} over {PRISM_BOOTS} boots against vanilla over {VANILLA_BOOTS}:\n" + "\n".join(failures)


@pytest.mark.parametrize("setting", FASTER_SETTINGS)
def test_priority_beats_bulk_in_the_same_runs(request, prism, setting):
    runs = held(flat(rounds(request, prism)[setting]))
    v = over_rounds("priority", setting, [r.results().tail("priority") for r in runs], setting,
                    [r.results().tail("bulk") for r in runs], paired=True, b_flow="bulk")
    assert v.verdict == FASTER, (f"{setting}: priority p99 not below bulk's in the same runs: {v.reason}, ratio "
                                 f"{v.ratio:.3f} {v.ci.text(3)}, ms {_ms(v.a_values)} vs bulk {_ms(v.b_values)}")


def _ms(values) -> str:
    return ", ".join(f"{v / 1000:.1f}" for v in values)


def loaded_run(request, prism, setting_text: str):
    """The first loaded run of the mix on the PRISM kernel in one setting that held its regime."""
    boots = rounds(request, prism)[setting_text]
    runs = held(flat(boots))
    assert runs, f"{setting_text}: no round held the regime{missed(boots)}"
    return runs[0]


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
    aa, off = paired(runs[AA_SETTING], runs["off"])
    for run in aa:
        stat = run.stages["server"].prism_stat
        assert stat.get("classified", 0) == 0 and stat.get("prio_enqueued", 0) == 0, f"{AA_SETTING} marked: {stat}"
    worse = []
    for what, higher_is_worse, value in [("priority p99", True, lambda r: r.results().tail("priority")),
                                         ("bulk p99", True, lambda r: r.results().tail("bulk")),
                                         ("cpu backlog drops", True, _target_backlog_drops),
                                         ("bulk delivered/s", False, _bulk_delivered)]:
        v = over_rounds(what, AA_SETTING, [value(r) for r in aa], "off", [value(r) for r in off], paired=True)
        if v.verdict == (SLOWER if higher_is_worse else FASTER):
            worse.append(f"{what}: ratio {v.ratio:.3f} {v.ci.text(3)}; {AA_SETTING} "
                         f"{_values(v.a_values)} vs off {_values(v.b_values)}")
    assert not worse, f"PRISM with nothing listed is worse than off over {len(aa)} rounds:\n" + "\n".join(worse)


def _values(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


OFF_LIKE_VANILLA = 2.0  # mode off's median within this factor of vanilla's, over boots


def test_mode_off_measures_like_vanilla(request, prism, vanilla):
    """Off, the PRISM kernel's loaded priority median is vanilla's, within the spread of boots.

    The median, not the p99: both kernels can lose more than a hundredth
    of the probes under this load, and a p99 that is only a lower bound on
    each side gives no ratio to bound.
    """
    off = rounds(request, prism)["off"]
    v = judge("priority", "prism-off", tails(off, "priority", 50), "vanilla", tails(vanilla["loaded"], "priority", 50),
              unit=BOOT, percentile=50)
    assert 1 / OFF_LIKE_VANILLA <= v.ratio <= OFF_LIKE_VANILLA, (
        f"mode off differs from vanilla: median ratio {v.ratio:.3f} {v.ci.text(3)}, ms by boot {_ms(v.a_values)} vs "
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
