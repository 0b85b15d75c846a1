"""Running a tool with its output in a log: the tail is kept for the failure message."""

from __future__ import annotations

import pytest

from testbed.core.errors import CommandError, TestbedError
from testbed.core.progress import CommandFailed, Step, print_tail


def test_output_goes_to_the_log(tmp_path):
    log = tmp_path / "logs" / "tool.log"
    Step("t").run(["sh", "-c", "echo one; echo two >&2"], log)
    text = log.read_text()
    assert "$ sh -c" in text and "one\n" in text and "two\n" in text


def test_failure_carries_the_log_and_its_last_30_lines(tmp_path, capsys):
    log = tmp_path / "tool.log"
    with pytest.raises(CommandFailed) as info:
        Step("t").run(["sh", "-c", "for i in $(seq 1 50); do echo line$i; done; exit 3"], log)
    failure = info.value
    assert failure.returncode == 3 and failure.log == log
    assert isinstance(failure, TestbedError) and isinstance(failure, CommandError)  # the CLI prints it in one line
    assert failure.command.startswith("sh -c 'for i in") and str(failure) == f"sh exited 3; log: {log}"
    assert failure.tail == [f"line{i}" for i in range(21, 51)]
    print_tail(failure)
    err = capsys.readouterr().err
    assert str(log) in err.replace("\n", "") and "line50" in err and "line20" not in err


def test_phase_reports_failure_and_reraises(tmp_path, capsys):
    step = Step("kernel x")
    with pytest.raises(RuntimeError), step.phase("compile"):
        raise RuntimeError("boom")
    assert "kernel x: compile failed" in capsys.readouterr().err


@pytest.mark.parametrize(("printed", "reason"), [
    ("cp: error writing 'x/usr/lib/a.so': No space left on device", "No space left on device"),
    ("cp: cannot create regular file 'x/etc/y': Read-only file system", "Read-only file system"),
    ("cp: cannot stat 'x': No such file or directory", None),
])
def test_a_full_or_read_only_disk_is_named_once_from_the_tool_output(tmp_path, printed, reason):
    """An image copy on a full disk printed ~900 cp errors; the failure names the host's reason instead."""
    log = tmp_path / "cp.log"
    script = f"for i in $(seq 1 900); do echo \"{printed}\" >&2; done; exit 1"
    with pytest.raises(CommandFailed) as info:
        Step("image base").run(["sh", "-c", script], log)
    assert info.value.host_problem == reason
