"""KTAP from a console: suites, cases, skips, failures with their diagnostics."""

from __future__ import annotations

import pytest

from testbed.analysis import ktap
from testbed.core.errors import VerdictError

CONSOLE = """\
[    0.500000] Run /init as init process
[    0.612001] KTAP version 1
[    0.612002] 1..2
[    0.612003]     KTAP version 1
[    0.612004]     # Subtest: prism_classifier
[    0.612005]     1..4
[    0.612006]     ok 1 prism_v4
[    0.612007]     # prism_v4_options: EXPECTATION FAILED at net/core/prism_test.c:80
[    0.612008]     Expected prism_classify(skb) == true, but
[    0.612009]         prism_classify(skb) == false
[    0.612010]     not ok 2 prism_v4_options
[    0.612011]     ok 3 - prism_v6 # SKIP no IPv6 here
[    0.612012]         KTAP version 1
[    0.612013]         # Subtest: prism_ports
[    0.612014]         ok 1 low
[    0.612015]         ok 2 high
[    0.612016]     ok 4 prism_ports
[    0.612017] # prism_classifier: pass:2 fail:1 skip:1 total:4
[    0.612018] not ok 1 prism_classifier
[    0.612019]     KTAP version 1
[    0.612020]     # Subtest: other
[    0.612021]     1..1
[    0.612022]     ok 1 works
[    0.612023] ok 2 other
"""


def test_suites_cases_and_results():
    suites = ktap.parse(CONSOLE)
    assert [s.name for s in suites] == ["prism_classifier", "other"]
    prism, other = suites
    assert prism.ok is False and other.ok is True
    assert [(c.name, c.ok, c.skipped) for c in prism.cases] == [
        ("prism_v4", True, False), ("prism_v4_options", False, False), ("prism_v6", True, True),
        ("prism_ports", True, False)]
    (failed,) = prism.failures
    assert failed.name == "prism_v4_options"
    assert failed.diagnostics[0].startswith("# prism_v4_options: EXPECTATION FAILED at net/core/prism_test.c:80")
    assert "prism_classify(skb) == false" in failed.diagnostics[-1]
    assert "FAIL prism_v4_options" in prism.table() and "EXPECTATION FAILED" in prism.table()


def test_a_suite_cut_off_has_no_result():
    cut = CONSOLE.split("[    0.612016]")[0]
    (prism,) = ktap.parse(cut)
    assert prism.ok is None and "no result" in prism.table()


def test_consoles_without_timestamps_parse_too():
    plain = "\n".join(line[15:] for line in CONSOLE.splitlines())
    assert [s.ok for s in ktap.parse(plain)] == [False, True]


def test_a_missing_suite_is_a_clear_error():
    with pytest.raises(VerdictError, match=r"KUnit suite nope did not run \(suites on the console: prism_classifier, other\)"):
        ktap.suite(CONSOLE, "nope")
