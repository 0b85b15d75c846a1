"""Running a tool with its output in a log: the tail is kept for the failure message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from testbed.core.errors import CommandError, CommandTimeout, TestbedError
from testbed.core.progress import CommandFailed, Step, StepTimeout, print_tail


def test_output_goes_to_the_log(tmp_path):
    log = tmp_path / "logs" / "tool.log"
    Step("t").run(["sh", "-c", "echo one; echo two >&2"], log, timeout=30)
    text = log.read_text()
    assert "$ sh -c" in text and "one\n" in text and "two\n" in text


def test_failure_carries_the_log_and_its_last_30_lines(tmp_path, capsys):
    log = tmp_path / "tool.log"
    with pytest.raises(CommandFailed) as info:
        Step("t").run(["sh", "-c", "for i in $(seq 1 50); do echo line$i; done; exit 3"], log, timeout=30)
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
        Step("image base").run(["sh", "-c", script], log, timeout=30)
    assert info.value.host_problem == reason


def test_a_tool_past_its_deadline_is_killed_with_what_it_started(tmp_path):
    """A hung build command is named and stopped, not left holding the run; its children die with it."""
    log, pidfile = tmp_path / "hang.log", tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(StepTimeout) as info:
        Step("t").run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo waiting; wait"], log, timeout=1)
    assert time.monotonic() - started < 10
    failure = info.value
    assert isinstance(failure, CommandTimeout) and isinstance(failure, CommandFailed)
    assert str(failure) == f"sh did not finish in 1s and was killed; log: {log}"
    assert failure.tail == ["waiting"] and failure.returncode < 0
    assert "[killed: no end after 1s]" in log.read_text()
    child = int(pidfile.read_text())
    for _ in range(50):  # the kill is asynchronous: give the child a moment to die
        if not running(child):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the tool's child {child} outlived the deadline")


def running(pid: int) -> bool:
    """pid exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_tool_that_finishes_in_time_is_not_a_timeout(tmp_path):
    Step("t").run(["sh", "-c", "sleep 0.2; echo done"], tmp_path / "ok.log", timeout=5)
