"""Priority probes from the host through the overlay: timed, checked, accounted for."""

from __future__ import annotations

import pytest

from testbed import assert_intact, summarize
from testbed.core.errors import VerdictError
from testbed.traffic.flows import ProbeFlow
from testbed.traffic.prober import HostProber

pytestmark = pytest.mark.vm

# pinned: a reflector that migrates between CPUs sends one flow's replies
# through two TX queues, which reorders them (see cases/mixes/overlay-flood.toml)
REFLECTOR = "taskset -c 0 prism-reflector -u -t -p 7007"


@pytest.fixture(scope="module")
def reflectors(deployment):
    """A reflector in every server-side container."""
    for name in ("s1", "s2"):
        deployment.container(name).spawn(REFLECTOR)
    return deployment


def test_unloaded_probes_all_return_intact_with_kernel_timestamps(reflectors):
    flows = [ProbeFlow("priority", "s1", flow_id=1, rate=200, count=600, size=200),
             ProbeFlow("priority-s2", "s2", flow_id=2, rate=100, count=300, size=1000, dscp=46, start=0.1)]
    run = HostProber(reflectors, flows).run()
    results = run.results()
    for flow in flows:
        integrity = assert_intact(results, flow=flow.name)
        assert integrity.sent == flow.count
        summary = summarize(results.samples(flow.name))
        # an emulated round trip through two QEMU backends and the overlay: more than
        # a few microseconds (it is not Python's clock) and well under a second
        assert 20 < summary.p50 < 500_000, summary.to_dict()
        assert len(run.lateness_ns[flow.name]) == flow.count  # one lateness per probe sent


def test_a_flow_to_a_port_without_reflector_fails_clearly(reflectors):
    flow = ProbeFlow("nobody", "s2", flow_id=9, dport=7999, count=10)
    with pytest.raises(VerdictError, match=r"probe flow nobody: no echo from s2 port 7999 within 2s"):
        HostProber(reflectors, [flow], warmup_timeout=2).run()


def test_icmp_and_inner_ipv6_probes_return_intact(reflectors):
    flows = [ProbeFlow("icmp4", "s1", flow_id=3, protocol="icmp", rate=100, count=200),
             ProbeFlow("udp6", "s1", flow_id=4, ip=6, rate=100, count=200, dscp=46),
             ProbeFlow("icmp6", "s2", flow_id=5, protocol="icmp", ip=6, rate=100, count=200, size=1000)]
    results = HostProber(reflectors, flows).run().results()
    for flow in flows:
        assert assert_intact(results, flow=flow.name).sent == flow.count
        assert 20 < summarize(results.samples(flow.name)).p50 < 500_000


def test_tcp_request_response_probes_over_ipv4_and_ipv6(reflectors):
    flows = [ProbeFlow("tcp4", "s1", flow_id=6, protocol="tcp", rate=100, count=200),
             ProbeFlow("tcp6", "s1", flow_id=7, protocol="tcp", ip=6, rate=50, count=100, size=1000, start=0.05)]
    run = HostProber(reflectors, flows).run()
    results = run.results()
    for flow in flows:
        assert assert_intact(results, flow=flow.name).sent == flow.count
        assert 20 < summarize(results.samples(flow.name)).p50 < 500_000
        assert len(run.lateness_ns[flow.name]) == flow.count


def test_a_tcp_flow_without_reflector_fails_clearly(reflectors):
    flow = ProbeFlow("nobody-tcp", "s2", flow_id=9, protocol="tcp", dport=7999, count=10)
    with pytest.raises(VerdictError, match=r"probe flow nobody-tcp: TCP to s2 \[10.42.0.22\]:7999 failed"):
        HostProber(reflectors, [flow]).run()


def test_a_held_flow_is_slower_by_exactly_its_hold(reflectors):
    """The instrument's positive control (benchmarks/instrument.py): a delay line at the sender, outside the
    guest, adds its hold to every RTT of the flow it holds and to no other flow."""
    hold = 0.030
    flows = [ProbeFlow("plain", "s1", flow_id=1, rate=100, count=300),
             ProbeFlow("held", "s1", flow_id=2, rate=100, count=300, start=0.005)]
    results = HostProber(reflectors, flows, hold={"held": hold}).run().results()
    p50 = {f.name: summarize(results.samples(f.name)).p50 for f in flows}
    for flow in flows:
        assert assert_intact(results, flow=flow.name).sent == flow.count
    added_ms = (p50["held"] - p50["plain"]) / 1000
    assert 0.8 * hold * 1000 < added_ms < hold * 1000 + 10, p50
