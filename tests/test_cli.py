"""Argument handling of the CLI, without booting anything."""

from __future__ import annotations

import json
import os

import pytest

from testbed import cli
from testbed.cli import up as up_cli
from testbed.core.errors import RunError
from testbed.net import supervisor
from testbed.net.fabric import _process_start


def parse(*argv: str):
    return cli.parser().parse_args(list(argv))


def test_entry_point_is_still_testbed_cli_main():
    assert callable(cli.main)


def test_up_defaults_and_options():
    args = parse("up", "two-vm")
    assert (args.topology, args.kernel, args.accel, args.func) == ("two-vm", "prism", "auto", up_cli.cmd_up)
    args = parse("up", "cases/topologies/three-vm.toml", "--kernel", "vanilla", "--accel", "tcg")
    assert (args.kernel, args.accel) == ("vanilla", "tcg")
    with pytest.raises(SystemExit):
        parse("up", "two-vm", "--accel", "hvf")


@pytest.mark.parametrize(("words", "expected"), [
    (["client", "--", "uname", "-r"], ("client", None, "uname -r")),
    (["client", "c1", "--", "ip addr | grep UP"], ("client", "c1", "ip addr | grep UP")),
    (["server", "s1", "--", "echo", "a b"], ("server", "s1", "echo 'a b'")),
])
def test_exec_splits_target_and_command_at_double_dash(words, expected):
    args = parse("exec", *words)
    assert up_cli.split_exec_words(args.words) == expected


@pytest.mark.parametrize("words", [["client", "uname"], ["client", "--"], ["a", "b", "c", "--", "true"]])
def test_exec_without_a_proper_command_is_a_one_line_error(words):
    with pytest.raises(RunError, match="exec:"):
        up_cli.split_exec_words(words)


def test_exec_options_come_before_the_target():
    args = parse("exec", "--run", "abcd1234", "--timeout", "5", "client", "--", "true")
    assert (args.run, args.timeout, args.words) == ("abcd1234", 5.0, ["client", "--", "true"])


def test_shell_and_down_arguments():
    args = parse("shell", "client", "c1", "--run", "r1")
    assert (args.vm, args.container, args.run) == ("client", "c1", "r1")
    assert parse("shell", "server").container is None
    assert parse("down").run is None and parse("down", "--all").all
    assert parse("down", "r1").run == "r1"


@pytest.mark.parametrize(("flags", "dirs"), [
    ([], {"kernels", "sources", "images", "package-trees"}),
    (["--kernels"], {"kernels", "sources"}),
    (["--images"], {"images", "package-trees"}),
    (["--kernels", "--images"], {"kernels", "sources", "images", "package-trees"}),
])
def test_cache_clean_flags_choose_directories(flags, dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seen = []
    monkeypatch.setattr("testbed.cli.cache.clean_directory", lambda d, base, in_use=None: seen.append(d.name) or [])
    assert cli.main(["cache", "clean", *flags]) == 0
    assert set(seen) == dirs


def test_verbose_flag_and_one_line_errors(capsys):
    assert cli.main(["up", "no-such-topology"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no-such-topology" in err and "Traceback" not in err


# --- finding a run ---------------------------------------------------------------------


def _fake_run(base, run_id: str, started: str = "2026-01-01T00:00:00") -> None:
    (base / run_id).mkdir(parents=True)
    state = {"run_id": run_id, "pid": os.getpid(), "pid_start": _process_start(os.getpid()), "topology": "two-vm",
             "kernel": "vanilla x", "accel": "tcg", "started": started, "describe": "",
             "vms": {"client": ["c1"], "server": []}}
    (base / run_id / supervisor.STATE).write_text(json.dumps(state))


def test_find_run_picks_the_only_one_and_refuses_to_guess(monkeypatch, tmp_path):
    monkeypatch.setattr(supervisor, "runtime_base", lambda: tmp_path)
    monkeypatch.setattr(supervisor, "runtime_dir", lambda run_id: tmp_path / run_id)
    with pytest.raises(RunError, match="no `up` deployment is running"):
        supervisor.find_run(None)
    _fake_run(tmp_path, "aaaa0001")
    run = supervisor.find_run(None)
    assert run.run_id == "aaaa0001" and run.alive() and run.vm_of("c1") == "client"
    _fake_run(tmp_path, "bbbb0002", "2026-01-02T00:00:00")
    with pytest.raises(RunError, match="2 `up` deployments are running"):
        supervisor.find_run(None)
    assert supervisor.find_run("bbbb0002").run_id == "bbbb0002"
    with pytest.raises(RunError, match="run cccc0003: no such"):
        supervisor.find_run("cccc0003")


def test_container_on_the_wrong_vm_names_where_it_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(supervisor, "runtime_base", lambda: tmp_path)
    _fake_run(tmp_path, "aaaa0001")
    run = supervisor.find_run(None)
    with pytest.raises(RunError, match="it runs on vm client"):
        up_cli._target(run, "server", "c1")
    with pytest.raises(RunError, match="no vm 'nope'"):
        up_cli._target(run, "nope", None)
