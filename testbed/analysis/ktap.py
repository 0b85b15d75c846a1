"""KUnit results from a guest console: KTAP parsed into suites and cases.

KUnit tests built into the kernel run at boot (with kunit.enable=1) and
print KTAP on the console, one level of indentation per nesting level:

    KTAP version 1
    1..1
        KTAP version 1
        # Subtest: prism_classifier
        1..2
        # prism_v4_options: EXPECTATION FAILED at net/core/prism_test.c:80
        Expected prism_classify(skb) == true, but ...
        not ok 1 prism_v4_options
        ok 2 prism_v6 # SKIP no IPv6
    # prism_classifier: pass:0 fail:1 skip:1 total:2
    not ok 1 prism_classifier

Lines between two results of a suite are the diagnostics of the second
(KUnit prints a case's failure before its result line); deeper subtests
(parameterised cases) are kept as diagnostics of their case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.errors import VerdictError

_PREFIX = re.compile(r"^(?:\[\s*\d+\.\d+\]\s?)?")
_RESULT = re.compile(r"^(?P<ok>ok|not ok) (?P<n>\d+)(?: -)? (?P<name>[^#]*?)\s*(?:#\s*(?P<directive>.*))?$")
_SUBTEST = re.compile(r"^# Subtest: (?P<name>\S+)")


@dataclass
class KtapCase:
    name: str
    ok: bool
    skipped: bool = False
    diagnostics: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return not self.ok and not self.skipped


@dataclass
class KtapSuite:
    name: str
    cases: list[KtapCase] = field(default_factory=list)
    ok: bool | None = None  # None: the suite never reported its result (crash, hang, cut-off console)

    @property
    def failures(self) -> list[KtapCase]:
        return [c for c in self.cases if c.failed]

    def table(self) -> str:
        lines = [f"suite {self.name}: {'ok' if self.ok else 'NOT OK' if self.ok is False else 'no result'}"]
        for c in self.cases:
            state = "skip" if c.skipped else "ok" if c.ok else "FAIL"
            lines.append(f"  {state:4} {c.name}")
            if c.failed:
                lines += [f"       {d}" for d in c.diagnostics]
        return "\n".join(lines)


def parse(console: str) -> list[KtapSuite]:
    """Every KUnit suite found in console text, in the order they ran."""
    suites: list[KtapSuite] = []
    suite: KtapSuite | None = None
    suite_indent = 0
    pending: list[str] = []
    for raw in console.splitlines():
        line = _PREFIX.sub("", raw.rstrip("\r"))
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if not body:
            continue
        sub = _SUBTEST.match(body)
        if sub and (suite is None or indent <= suite_indent):
            suite, suite_indent, pending = KtapSuite(sub.group("name")), indent, []
            suites.append(suite)
            continue
        if suite is None:
            continue
        result = _RESULT.match(body)
        if result and indent == suite_indent:
            directive = (result.group("directive") or "").strip()
            suite.cases.append(KtapCase(result.group("name").strip(), result.group("ok") == "ok",
                                        directive.upper().startswith("SKIP"), pending))
            pending = []
        elif result and indent < suite_indent:
            if result.group("name").strip() == suite.name:
                suite.ok = result.group("ok") == "ok"
            suite = None
        elif indent >= suite_indent and not body.startswith(("KTAP version", "1..")):
            pending.append(body)
    return suites


def suite(console: str, name: str) -> KtapSuite:
    """The named suite's results; VerdictError when it never ran."""
    found = [s for s in parse(console) if s.name == name]
    if not found:
        ran = ", ".join(s.name for s in parse(console)) or "none"
        raise VerdictError(f"KUnit suite {name} did not run (suites on the console: {ran}); "
                           f"is it built in and was the kernel booted with kunit.enable=1?")
    return found[-1]
