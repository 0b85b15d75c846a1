"""PRISM's rarely taken paths, exercised in a running guest.

The socket-priority threshold (transmit-side marking without a port), a
marked flow of which some packets arrive cloned (tc mirred, packet sockets),
and CPU hot-unplug with a busy priority backlog (dev_cpu_dead must move the
priority queues like the normal ones). Hot-unplug resets CPU pinnings and
interrupt affinities (each run puts the mix's back, and the unplug case
checks that it did), so these cases have their own deployment (this
module) and the unplug case comes last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shlex
import time

import kernel_trace
import pytest

from testbed import Traffic, assert_intact
from testbed.net import overlay
from testbed.traffic import mix as mix_mod
from testbed.traffic import prism_knobs
from testbed.traffic.flows import Iperf3Spec
from testbed.traffic.placement import parse_cpu_list
from testbed.traffic.stagewatch import parse_prism_stat

pytestmark = [pytest.mark.vm, pytest.mark.debug_kernel]

MIX = "overlay-flood"
SK_PRIORITY = 6  # TC_PRIO_INTERACTIVE: what IP_TOS 0x10 (low delay) gives a socket's sk_priority
LOW_DELAY_DSCP = 4  # TOS 0x10 >> 2; not in the mix's DSCP set, so only the socket priority can mark


@pytest.fixture(scope="module")
def prism(request, deployment, kernel, accel):
    if not prism_knobs.has_prism(next(iter(deployment.machines.values()))):
        pytest.skip(f"kernel {kernel.variant} ({kernel.release}) has no PRISM sysctls")
    mix = mix_mod.load(MIX)
    prism_knobs.apply(deployment, prism_knobs.parse_setting("pseudo-sync"), mix)
    return Traffic(request, deployment, kernel, accel)


def prism_stat(vm) -> dict[str, int]:
    return parse_prism_stat(vm.run("cat /proc/net/prism_stat", check=True).stdout)


def priority_enqueued_by(prism: Traffic, threshold: int, dscp: int, *, across_netns: bool) -> int:
    """Packets the client VM put in a priority backlog while a TCP sender with the given TOS ran.

    across_netns: c1 sends to s2, so its packets cross c1's veth into the
    VM's namespace; else the sender and receiver are in the VM's own
    namespace and the packets cross loopback. Both reach the VM's backlog.
    """
    deployment = prism.deployment
    client = deployment.vm("client")
    client.run(f"echo {threshold} > /proc/sys/net/core/prism_sk_priority", check=True)
    spec = Iperf3Spec(f"sk-priority-{threshold}-{dscp}", "c1", "s2", port=5301, dscp=dscp)
    before = prism_stat(client)
    if across_netns:
        deployment.container("s2").spawn(spec.server_command())
        time.sleep(0.3)
        result = deployment.container("c1").exec(spec.client_command(deployment.container("s2").address, 2),
                                                 timeout=60)
    else:
        client.run(f"{spec.server_command()} -D", check=True)
        time.sleep(0.3)
        result = client.run(spec.client_command("127.0.0.1", 2), timeout=60)
    assert result.exit_code == 0, f"iperf3 with TOS {dscp << 2:#x} failed: {result.stderr or result.stdout}"
    return prism_stat(client)["prio_enqueued"] - before["prio_enqueued"]


def test_socket_priority_threshold_marks_what_a_socket_sends(prism):
    """A socket at or above net.core.prism_sk_priority has its packets marked on transmit; below it, none.

    A sender in the VM's own namespace, over loopback: marked packets go to
    the VM's priority backlog (prio_enqueued). Port 5301 and DSCP 4 are in
    neither of the mix's sets, so nothing else can mark them.
    """
    try:
        marked = priority_enqueued_by(prism, SK_PRIORITY, LOW_DELAY_DSCP, across_netns=False)
        below = priority_enqueued_by(prism, SK_PRIORITY, 0, across_netns=False)
        disabled = priority_enqueued_by(prism, 0, LOW_DELAY_DSCP, across_netns=False)
    finally:
        prism.deployment.vm("client").run("echo 0 > /proc/sys/net/core/prism_sk_priority")
    assert marked > 100, f"sk_priority {SK_PRIORITY} >= threshold: only {marked} packets queued as priority"
    assert below == 0, f"sk_priority 0 below threshold {SK_PRIORITY}: {below} packets queued as priority"
    assert disabled == 0, f"threshold 0 (off): {disabled} packets queued as priority"


def test_a_container_cannot_mark_its_own_traffic_priority_in_the_vm(prism):
    """A mark set in a container's namespace does not count in the VM's: there the headers decide.

    c1 sends TCP with IP_TOS 0x10 (socket priority 6, at the threshold):
    marked in c1's namespace, its packets cross the veth into the VM's
    namespace, where neither port 5301 nor DSCP 4 is listed. The VM's stack
    must not queue them as priority (the series' first version did: a
    container could make its own bulk priority host-wide).
    """
    try:
        crossed = priority_enqueued_by(prism, SK_PRIORITY, LOW_DELAY_DSCP, across_netns=True)
    finally:
        prism.deployment.vm("client").run("echo 0 > /proc/sys/net/core/prism_sk_priority")
    assert crossed == 0, f"{crossed} packets c1 marked in its own namespace were queued as priority in the VM's"


def prio_enqueued_per_cpu(vm) -> dict[int, int]:
    """prio_enqueued of /proc/net/prism_stat, per CPU."""
    lines = vm.run("cat /proc/net/prism_stat", check=True).stdout.split("\n")
    column = lines[0].split().index("prio_enqueued")
    return {int(row.split()[0]): int(row.split()[column]) for row in lines[1:] if row.strip()}


def marked_udp_queued_per_cpu(prism: Traffic, port: int) -> dict[int, int]:
    """Priority packets per client CPU while c1 (pinned to CPU 0) sends marked UDP to s2, RPS on c1's veth to CPU 1.

    UDP: with TCP, s2's ACKs carry the same DSCP back and are queued on
    whichever CPU the client's NIC interrupts, which says nothing about
    where RPS sends c1's packets.
    """
    client = prism.deployment.vm("client")
    rps = f"/sys/class/net/{overlay.veth_name(prism.deployment.container('c1').container)}/queues/rx-0/rps_cpus"
    spec = Iperf3Spec(f"rps-marked-{port}", "c1", "s2", protocol="udp", rate="20M", size=200, port=port,
                      dscp=mix_mod.load(MIX).priority_dscp[0])
    s2, c1 = prism.deployment.container("s2"), prism.deployment.container("c1")
    client.run(f"echo 2 > {rps}", check=True)  # CPU 1
    try:
        before = prio_enqueued_per_cpu(client)
        s2.spawn(spec.server_command())
        time.sleep(0.3)
        result = c1.exec(f"taskset -c 0 {spec.client_command(s2.address, 2)}", timeout=60)
        after = prio_enqueued_per_cpu(client)
    finally:
        client.run(f"echo 0 > {rps}")
    assert result.exit_code == 0, f"iperf3 failed: {result.stderr or result.stdout}"
    return {cpu: after[cpu] - before.get(cpu, 0) for cpu in after}


def test_a_marked_packet_from_a_veth_is_not_steered_by_rps(prism):
    """RPS on c1's veth would move its packets to CPU 1; marked ones stay on CPU 0, where c1 sent them.

    The mark is cleared on the way into the VM's namespace, so the VM must
    classify a packet before RPS decides where it goes. The first series
    classified it only on the RPS target's backlog, so a marked packet was
    steered like any other (issue 13, item 4) and counted in the positions
    RFS keeps per flow. c1 sends UDP with DSCP 46 (in the mix's set) to s2,
    its sender pinned to CPU 0.
    """
    queued = marked_udp_queued_per_cpu(prism, 5302)
    assert queued[0] > 100, f"c1's marked packets were not queued as priority on CPU 0: {queued}"
    assert queued[1] == 0, f"RPS steered c1's marked packets to CPU 1: {queued}"


@pytest.mark.parametrize(("without", "expect"), [("local", "steered to CPU 1"), ("backlog", "on no priority backlog")])
def test_each_prism_feature_turns_off_alone(prism, without, expect):
    """net.core.prism_features: one part of PRISM off, the rest on (series 0012).

    Without `local`, RPS steers c1's marked packets to CPU 1 like any
    other, where they still take CPU 1's priority backlog; without
    `backlog`, they stay on CPU 0 but in the normal backlog. Either way the
    other features are untouched, so one part's effect can be measured.
    """
    client = prism.deployment.vm("client")
    key = "/proc/sys/net/core/prism_features"
    if client.run(f"test -e {key}").exit_code != 0:
        pytest.skip("this PRISM kernel has no net.core.prism_features")
    client.run(f"echo {prism_knobs.ALL_FEATURES & ~prism_knobs.FEATURES[without]} > {key}", check=True)
    try:
        queued = marked_udp_queued_per_cpu(prism, 5303)
    finally:
        client.run(f"echo {prism_knobs.ALL_FEATURES} > {key}", check=True)
    if without == "local":
        assert queued[1] > 100 and queued[0] == 0, f"without local, marked packets must be {expect}: {queued}"
    else:
        assert sum(queued.values()) == 0, f"without backlog, marked packets must be {expect}: {queued}"


SPARSE_RATE = 100  # marked probes a second
SPARSE_QUOTA = 256  # net.core.prism_quota for the sparse case (default 64)


def prism_stat_per_cpu(vm) -> dict[int, dict[str, int]]:
    """/proc/net/prism_stat by CPU, each column by name."""
    lines = vm.run("cat /proc/net/prism_stat", check=True).stdout.split("\n")
    header = lines[0].split()[1:]
    return {int(row.split()[0]): dict(zip(header, map(int, row.split()[1:]), strict=False))
            for row in lines[1:] if row.strip()}


def test_a_sparse_priority_flow_under_a_standing_backlog_never_yields(prism):
    """The backlog's quota bounds a priority *flood*; a sparse flow must never hit it (series v5, 0004).

    The quota counts the priority packets delivered since a normal packet
    was last delivered. v4 reset that count only when the backlog went
    idle or the quota fired, so under a standing bulk backlog (never idle)
    it grew across sparse probes, and every prism_quota-th priority packet
    yielded to a full NAPI weight of bulk: one probe in 64, inside the p99.
    Here the marked probes share CPU 1's backlog with the flood (`+no-local`:
    RPS steers them there), two deliveries a probe (from the overlay, then
    from the container's veth).

    A correct count still fires when a stall upstream hands CPU 1 more than
    a quota of probes at once: that is a flood for as long as it lasts. On a
    slower host the lockdep kernel's stalls did that at the default quota
    (10 yields in CI, 44 at 350 probes/s; here, with half a host core taken
    by a busy loop, 2 yields in 1 of 2 runs, and 0 in 5 runs at 256), so
    the case sets the quota
    to SPARSE_QUOTA: 129 probes must pile up, 1.3 s of SPARSE_RATE. v4's
    count does not care about stalls: it yields once per quota + 1 priority
    deliveries, 4 times in this run, and the case checks that the run gave
    it enough deliveries to show that at least twice.
    """
    mix = mix_mod.load(MIX)
    sparse = dataclasses.replace(mix.flows_of(mix_mod.PRIORITY)[0], name="priority-sparse", rate=SPARSE_RATE,
                                 count=6 * SPARSE_RATE)
    bulk = mix.flows_of(mix_mod.BULK)
    mix = dataclasses.replace(mix, probes=(sparse, *bulk),
                              classes={sparse.name: mix_mod.PRIORITY, **{b.name: mix_mod.BULK for b in bulk}})
    server = prism.deployment.vm("server")
    setting = prism_knobs.parse_setting("pseudo-sync+no-local")
    prism_knobs.apply(prism.deployment, setting, mix)
    server.run(f"echo {SPARSE_QUOTA} > /proc/sys/net/core/prism_quota", check=True)
    try:
        before = prism_stat_per_cpu(server)
        # only CPU 1's backlog must stand: a drop at CPU 0 changes no count there (the lockdep
        # kernel, classifying every packet on CPU 0, dropped 2-19 % at its gro_cell in every try)
        run = prism.run_in_regime(dataclasses.replace(mix, name=f"{mix.name}-sparse@{setting.label}"),
                                  tries=3, standing_only=True)
        after = prism_stat_per_cpu(server)
    finally:
        server.run("echo 64 > /proc/sys/net/core/prism_quota", check=True)
        prism_knobs.apply(prism.deployment, prism_knobs.parse_setting("pseudo-sync"), mix)
    per_cpu = {cpu: {k: v - before.get(cpu, {}).get(k, 0) for k, v in counts.items()} for cpu, counts in after.items()}
    stat = run.stages["server"].prism_stat
    assert stat.get("prio_enqueued", 0) >= sparse.count // 2, f"the probes did not take the priority backlog: {stat}"
    delivered_at_target = sum(per_cpu[cpu]["prio_enqueued"] for cpu in run.regime.target_cpus)
    assert delivered_at_target >= 2 * (SPARSE_QUOTA + 1), (
        f"CPUs {run.regime.target_cpus} queued {delivered_at_target} priority packets: too few for a count that "
        f"never starts over to reach the quota ({SPARSE_QUOTA}) twice; per CPU {per_cpu}")
    assert stat.get("quota_yield", 0) == 0, (
        f"a sparse priority flow yielded to bulk {stat['quota_yield']} times under a standing backlog; "
        f"{run.stages['server'].where()}; prism_stat per CPU over the tries {per_cpu}")


# Mirrors the VXLAN packets on the server's eth0 whose probe sequence number is
# odd to a throwaway veth (tc mirred clones them), so exactly those reach the
# VXLAN device's gro_cell cloned. Offsets from the outer IPv4 header: outer IPv4
# 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 + inner IPv4 20 + UDP 8 = 78 to the
# probe payload, whose sequence number's last byte is payload byte 11 (89): the
# second byte of the word at 88.
MIRROR_ODD_PROBES = """
ip link add ptmir0 type veth peer name ptmir1
ip link set ptmir0 up && ip link set ptmir1 up
tc qdisc add dev eth0 ingress
tc filter add dev eth0 parent ffff: protocol ip prio 1 u32 match u32 0x00010000 0x00010000 at 88 \
  action mirred egress mirror dev ptmir0
"""
UNMIRROR = "tc qdisc del dev eth0 ingress; ip link del ptmir0"


def mirrored_packets(vm) -> int:
    """Packets the mirror action took a clone of (its `Sent … pkt` counter)."""
    out = vm.run("tc -s filter show dev eth0 ingress", check=True).stdout
    sent = re.findall(r"Sent \d+ bytes (\d+) pkt", out)
    assert sent, f"no mirred statistics in tc's output:\n{out}"
    return int(sent[-1])


def test_a_marked_flow_partly_cloned_stays_in_order(prism):
    """Half of a priority flow's packets arrive cloned at the VXLAN gro_cell; the flow stays in order.

    GRO must not touch a clone's shared data, so gro_cells_receive() sends
    cloned packets to the backlog, which PRISM polls ahead of the cell while
    it holds marked packets: odd probes overtook even ones still waiting on
    the cell (issue 13, item 6). Here tc mirrors every odd probe (a packet
    socket with a filter does the same), at 2000 probes/s so that two probes
    often share a NIC poll.
    """
    server = prism.deployment.vm("server")
    mix = mix_mod.load(MIX)
    fast = dataclasses.replace(mix.flows_of(mix_mod.PRIORITY)[0], name="priority-fast", rate=2000, count=8000)
    quiet = dataclasses.replace(mix.without_bulk(), name=f"{MIX}-mirrored", probes=(fast,),
                                classes={fast.name: mix_mod.PRIORITY})
    server.run(MIRROR_ODD_PROBES, check=True)
    try:
        run = prism.run(quiet)
        mirrored = mirrored_packets(server)
    finally:
        server.run(UNMIRROR)
    assert mirrored >= fast.count // 4, f"tc mirrored only {mirrored} packets: the clones were not made"
    # Loss is not this case's question: at 2000/s from a busy 2-core host some probes
    # drop (197 of 8000 once, the sender 110 ms late at its p99; 1203 on the lockdep
    # kernel, whose CPU 0 cannot keep up); order is. What the order is judged on is
    # a cloned probe next to an uncloned one: both of a pair n, n+1 must arrive.
    found = assert_intact(run.results(), flow=fast.name, tolerate=("lost",))
    pairs = adjacent_pairs(run.results().records(fast.name))
    assert pairs >= fast.count // 4, (f"only {pairs} neighbouring probes (one cloned, one not) both arrived, too "
                                      f"few to judge their order:\n{found.table()}")


def adjacent_pairs(records) -> int:
    """Probes n whose successor n + 1 arrived too (one of the two odd, so cloned, one even)."""
    arrived = {r.seq for r in records if r.received_ns is not None}
    return sum(1 for seq in arrived if seq + 1 in arrived)


# Waits (in the guest, up to 60 s) until CPU 1's priority backlog has taken
# 2000 more packets, so the unplug happens under the priority flood, then
# takes CPU 1 down and up again; each step is logged for the assertions. The
# run that carries it routes the NIC's interrupts to CPU 1 (marked packets
# stay on the CPU that received them, so that is where their backlog is).
HOTPLUG = r"""
row() { awk 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "prio_enqueued") c = i}
             $1 == "1" {print $c}' /proc/net/prism_stat; }
b=$(row); t=0
while [ $(( $(row) - b )) -lt 2000 ]; do
  t=$((t + 1)); [ $t -le 120 ] || { echo timeout; exit 1; }; sleep 0.5
done
echo "queued $(( $(row) - b )) on cpu1"
echo 0 > /sys/devices/system/cpu/cpu1/online && echo offline-ok
sleep 2
echo 1 > /sys/devices/system/cpu/cpu1/online && echo online-ok
"""


def placed_as(mix: mix_mod.Mix, server) -> str | None:
    """None when the server's probe reflectors and NIC interrupts are where the mix puts them; else what is not."""
    tuning = mix.tuning["server"]
    pins = server.run("for p in $(pgrep -f '^prism-reflector .*-t '); do echo $p $(awk '/^Cpus_allowed_list/ "
                      "{print $2}' /proc/$p/status) $(tr '\\0' ' ' < /proc/$p/cmdline); done", check=True).stdout
    wrong = [line for line in pins.splitlines() if parse_cpu_list(line.split()[1]) != set(tuning.reflector_cpus)]
    irqs = server.run("v=$(basename $(readlink /sys/class/net/eth0/device)); for i in $(awk -v v=$v "
                      "'$0 ~ \" \"v\"-(input|output)\" {sub(\":\", \"\", $1); print $1}' /proc/interrupts); "
                      "do echo $i $(cat /proc/irq/$i/smp_affinity_list); done", check=True).stdout
    wrong += [f"irq {line}" for line in irqs.splitlines()
              if parse_cpu_list(line.split()[1]) != set(tuning.irq["eth0"])]
    if not pins.strip() or not irqs.strip():
        wrong.append(f"found no reflector ({pins!r}) or no eth0 queue interrupt ({irqs!r})")
    return "; ".join(wrong) or None


UNPLUG_EVENTS = ("napi/napi_poll", "net/netif_rx", "net/netif_receive_skb")


def assert_lost_only_at_reflectors(run) -> None:
    """Every lost probe is one a reflector's full socket buffer dropped (UDP RcvbufErrors in its
    container), i.e. user space fell behind; the guest's forwarding lost none.

    On the lockdep kernel, recording a trace of every packet, the unloaded
    run after the hotplug once had a p50 RTT of 184 ms and lost 26 priority
    probes, all 26 counted as RcvbufErrors in s1: the reflector, pinned to
    the NIC's CPU, read too slowly.

    Datagram probes only: a TCP probe is never lost in the network (TCP
    resends it); the prober counts a TCP slot as lost when the exchange
    before it was still open (no coordinated omission), which is lateness,
    not a drop. A clean-clone run here with half a host core taken by a
    stray busy loop skipped 11 such slots on the lockdep kernel, and lost no
    datagram.
    """
    results = run.results()
    lost: dict[str, int] = {}
    for flow in run.mix.probes:
        if flow.protocol != "tcp":
            lost[flow.dst] = lost.get(flow.dst, 0) + results.integrity(flow.name).lost
    socket = {c: sum(s.sockets.get(c, {}).get("RcvbufErrors", 0) for s in run.stages.values()) for c in lost}
    beyond = {c: (n, socket[c]) for c, n in lost.items() if n > socket[c]}
    assert not beyond, (f"probes lost beyond the reflectors' sockets (container: lost, socket-buffer drops): {beyond}; "
                        f"{'; '.join(s.where() for s in run.stages.values())}")


def test_a_trace_recorded_in_the_guest_is_saved_with_the_probes_clock(prism, tmp_path):
    """The unplug case keeps the server's trace when it fails: recording and saving it must work.

    A ping from c1 to s1 crosses the server's NIC, VXLAN, bridge and veth,
    so each event below fires; the timestamps are CLOCK_REALTIME seconds
    (trace_clock tai), the clock of the probes' guest stamps.
    """
    server = prism.deployment.vm("server")
    if not kernel_trace.available(server):
        pytest.skip(f"kernel {prism.kernel.variant} has no trace events (CONFIG_ENABLE_DEFAULT_TRACERS)")
    s1 = prism.deployment.container("s1")
    with kernel_trace.recording(server, UNPLUG_EVENTS) as trace:
        prism.deployment.container("c1").exec(f"ping -c 3 -i 0.2 -W 5 {s1.address}", timeout=30, check=True)
        now = time.time()
    text = trace.save(tmp_path / "trace.txt").read_text()
    for event in UNPLUG_EVENTS:
        assert f" {event.split('/')[1]}: " in text, f"no {event} event in the saved trace:\n{text[-2000:]}"
    stamps = [float(m) for m in re.findall(r" (\d+\.\d+): napi_poll:", text)]
    assert stamps and abs(stamps[-1] - now) < 60, f"trace stamps are not wall-clock seconds: {stamps[-3:]} vs {now}"


def test_unplugging_a_cpu_under_a_priority_flood_keeps_the_guest_forwarding(prism):
    """CPU 1 goes down and up while its priority backlog is in use; the guest goes on intact.

    The splat watch fails the case on any WARN/BUG/list corruption in the
    hotplug path; no probe may be duplicated or corrupted meanwhile (the
    dead CPU's queued packets are re-injected on another CPU, so loss from
    the flood's overflow and reordering are allowed); afterwards CPU 1 is
    back and an unloaded run duplicates, reorders and corrupts nothing, and
    loses nothing but what a reflector's own full socket buffer dropped.
    """
    mix = mix_mod.load(MIX)
    server = prism.deployment.vm("server")
    flooded = mix.with_priority_flood().with_tuning("server", irq={"eth0": (1,)})
    prism.calibration(flooded)  # before the script waits for the flood: a ramp takes longer than its wait
    server.run(f"setsid sh -c {shlex.quote(HOTPLUG)} </dev/null >/tmp/hotplug.log 2>&1 &", check=True)
    run = prism.run(dataclasses.replace(flooded, name=f"{flooded.name}-hotplug"))
    deadline = time.monotonic() + 30  # the script's last step is 2 s after the unplug
    while not any(w in (log := server.run("cat /tmp/hotplug.log").stdout) for w in ("online-ok", "timeout")):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "offline-ok" in log and "online-ok" in log, f"hotplug did not run under the flood: {log!r}"
    assert server.run("cat /sys/devices/system/cpu/cpu1/online", check=True).stdout.strip() == "1"
    for flow in run.mix.flows_of(mix_mod.PRIORITY):
        assert_intact(run.results(), flow=flow.name, tolerate=("lost", "reordered"))
    # The hotplug reset every task's CPU affinity (6.1's cpuset does that) and virtio-net
    # placed its interrupts anew: the run after must measure under the mix's placement
    # again, not with reflectors that migrate and so reorder their own replies. A
    # reorder left after that fails, with the counts and, where the kernel has trace
    # events, which NAPI and CPU handled each packet meanwhile (the clock of the probes' stamps).
    traced = kernel_trace.available(server)
    with kernel_trace.recording(server, UNPLUG_EVENTS) if traced else contextlib.nullcontext() as trace:
        after = prism.run(mix.without_bulk())
    assert (wrong := placed_as(mix, server)) is None, f"the run after the hotplug was not placed as the mix says: {wrong}"
    try:
        for flow in after.mix.flows_of(mix_mod.PRIORITY):
            assert_intact(after.results(), flow=flow.name, tolerate=("lost",))
        assert_lost_only_at_reflectors(after)
    except AssertionError as failure:
        if trace is None:
            raise
        saved = trace.save(prism.directory / f"unplug-{prism.kernel.variant}-trace.txt")
        raise AssertionError(f"{failure}\nthe server's {', '.join(UNPLUG_EVENTS)} during that run "
                             f"(clock tai = the probes' guest stamps): {saved}") from None

