"""The one command API: results, errors and deadlines on the host."""

from __future__ import annotations

import time

import pytest

from testbed.core import cmd
from testbed.core.cmd import CommandResult
from testbed.core.errors import CommandError, CommandTimeout, GuestCommandError


def test_check_raises_with_exit_code_and_last_stderr_lines():
    result = CommandResult("ip link set dev eth9 up", 2, "", "one\ntwo\nthree\nCannot find device \"eth9\"\n", 0.1)
    with pytest.raises(CommandError) as info:
        result.check()
    message = str(info.value)
    assert "`ip link set dev eth9 up` exited 2" in message
    assert 'two | three | Cannot find device "eth9"' in message
    assert "one" not in message
    assert not isinstance(info.value, GuestCommandError)


def test_check_falls_back_to_stdout_then_to_no_output():
    with pytest.raises(CommandError, match="exited 1: from stdout"):
        CommandResult("x", 1, "from stdout\n", "", 0.0).check()
    with pytest.raises(CommandError, match="exited 1: no output"):
        CommandResult("x", 1, "", "  \n", 0.0).check()


def test_check_returns_the_result_when_it_succeeded():
    result = CommandResult("true", 0, "", "", 0.0)
    assert result.check() is result


def test_a_result_raises_the_failure_of_where_it_ran():
    with pytest.raises(GuestCommandError):
        CommandResult("x", 1, "", "", 0.0, GuestCommandError).check()


def test_run_gives_output_and_exit_code():
    result = cmd.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr, result.ok) == (3, "out\n", "err\n", False)
    assert result.command == "sh -c 'echo out; echo err >&2; exit 3'"


def test_run_with_check_raises_on_failure():
    with pytest.raises(CommandError, match=r"`false` exited 1: no output"):
        cmd.run(["false"], check=True)


def test_run_has_a_deadline():
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"`sleep 30` did not finish in 0.2s and was killed"):
        cmd.run(["sleep", "30"], timeout=0.2)
    assert time.monotonic() - start < 5


def test_a_missing_program_is_named():
    with pytest.raises(CommandError, match="no-such-tool-xyz is not installed"):
        cmd.run(["no-such-tool-xyz"])


def test_run_in_a_netns_prefixes_ip_netns_exec():
    assert cmd.in_netns(["ping", "x"], "ptb-1") == ["ip", "netns", "exec", "ptb-1", "ping", "x"]
    assert cmd.in_netns(["ping", "x"], None) == ["ping", "x"]
