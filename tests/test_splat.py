"""testbed.vm.splat: recognising kernel splats in console output."""

from __future__ import annotations

import pytest

from testbed.vm.splat import MAX_LINES, ConsoleWatcher, SplatScanner, classify


@pytest.mark.parametrize("line, kind", [
    ("[   12.345678] WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:80 lkdtm_WARNING+0x10/0x20", "WARNING"),
    ("[   40.100000] Kernel panic - not syncing: sysrq triggered crash", "panic"),
    ("[    7.000001] BUG: kernel NULL pointer dereference, address: 0000000000000000", "BUG"),
    ("[   30.000000] kernel BUG at net/core/skbuff.c:207!", "BUG"),
    ("[   44.123456] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]", "soft lockup"),
    ("[  245.000000] INFO: task kworker/0:1:12 blocked for more than 120 seconds.", "hung task"),
    ("[    7.000100] Oops: 0002 [#1] PREEMPT SMP", "Oops"),
    ("[    9.000000] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1]",
     "Oops"),
    ("[    3.000000] UBSAN: shift-out-of-bounds in net/core/dev.c:1", "UBSAN"),
    ("[    5.000000] BUG: KASAN: slab-use-after-free in skb_release_data+0x1e/0x30", "KASAN"),
    ("[   60.000000] rcu: INFO: rcu_sched self-detected stall on CPU", "RCU stall"),
    ("[   60.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "RCU stall"),
])
def test_classify_recognises_kernel_splat(line, kind):
    assert classify(line) == kind


@pytest.mark.parametrize("line", [
    "[    0.000000] Linux version 6.1.192 (builder@host) (gcc 12.2.0) #1 SMP PREEMPT_DYNAMIC",
    "[    1.234567] random: crng init done",
    "[    2.000000] virtio_net virtio1 eth0: renamed from eth0",
    "warning: iperf3 is using a deprecated option",
    "prism-test: 3 warnings, 0 errors",
    "",
])
def test_classify_ignores_ordinary_lines(line):
    assert classify(line) is None


WARNING_SPLAT = [
    "[   12.345678] ------------[ cut here ]------------",
    "[   12.345678] WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:80 lkdtm_WARNING+0x10/0x20",
    "[   12.345679] Modules linked in:",
    "[   12.345680] CPU: 0 PID: 1 Comm: sh Not tainted 6.1.192 #1",
    "[   12.345681] RIP: 0010:lkdtm_WARNING+0x10/0x20",
    "[   12.345682] Call Trace:",
    "[   12.345683]  <TASK>",
    "[   12.345684]  lkdtm_do_action+0x1a/0x30",
    "[   12.345685]  direct_entry+0xa5/0xc0",
    "[   12.345686]  </TASK>",
    "[   12.345687] ---[ end trace 0000000000000000 ]---",
]


def feed_all(scanner, lines):
    for text in lines:
        scanner.feed(text + "\n")


def test_warning_and_its_call_trace_are_one_complete_splat():
    scanner = SplatScanner()
    feed_all(scanner, ["[    1.000000] booting", *WARNING_SPLAT, "[   13.000000] eth0: link up"])
    assert len(scanner.splats) == 1
    splat = scanner.splats[0]
    assert splat.kind == "WARNING"
    assert splat.complete
    assert splat.lines == WARNING_SPLAT[1:]  # from the WARNING line to the end marker, newlines stripped
    assert splat.title.startswith("WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:80")


def test_splat_lineno_is_its_first_line_in_the_log():
    scanner = SplatScanner()
    feed_all(scanner, ["[    1.000000] booting", "[    1.100000] more boot", *WARNING_SPLAT])
    # two boot lines, then the "cut here" line: the WARNING is line 4
    assert scanner.splats[0].lineno == 4


def test_second_splat_after_an_ended_one_is_counted_separately():
    scanner = SplatScanner()
    panic = ["[   20.000000] Kernel panic - not syncing: sysrq triggered crash",
             "[   20.000001] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---"]
    feed_all(scanner, [*WARNING_SPLAT, "[   19.000000] eth0: link up", *panic])
    assert [s.kind for s in scanner.splats] == ["WARNING", "panic"]
    assert scanner.splats[1].lineno == len(WARNING_SPLAT) + 2
    assert scanner.splats[1].lines == panic
    assert scanner.splats[1].complete


def test_splat_without_end_marker_stays_open_and_incomplete():
    scanner = SplatScanner()
    feed_all(scanner, ["[    7.0] BUG: kernel NULL pointer dereference, address: 0000000000000000",
                       "[    7.1] #PF: supervisor write access in kernel mode",
                       "[    7.2] Oops: 0002 [#1] PREEMPT SMP"])
    assert len(scanner.splats) == 1  # the Oops inside the BUG's text does not start another
    assert not scanner.splats[0].complete
    assert len(scanner.splats[0].lines) == 3


def test_splat_text_is_capped_at_max_lines():
    scanner = SplatScanner()
    feed_all(scanner, ["[   44.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]"]
             + [f"[   44.0] frame {i}" for i in range(MAX_LINES + 5)]
             + ["[   45.0] WARNING: CPU: 1 PID: 9 at net/core/dev.c:1 f+0x1/0x2"])
    assert [s.kind for s in scanner.splats] == ["soft lockup", "WARNING"]
    assert len(scanner.splats[0].lines) == MAX_LINES
    assert scanner.splats[0].complete


def test_feed_strips_carriage_returns():
    scanner = SplatScanner()
    scanner.feed("[    7.2] Oops: 0002 [#1] PREEMPT SMP\r\n")
    assert scanner.splats[0].lines == ["[    7.2] Oops: 0002 [#1] PREEMPT SMP"]


# --- ConsoleWatcher --------------------------------------------------------


def append(path, data: bytes):
    with open(path, "ab") as f:
        f.write(data)


def test_watcher_does_not_scan_a_partial_line_until_it_is_completed(tmp_path):
    log = tmp_path / "console.log"
    watcher = ConsoleWatcher(log)
    append(log, b"[    1.0] booting\n[   12.3] WARNING: CPU: 0 PID: 1 at drivers/")
    assert watcher.poll() == []
    append(log, b"misc/lkdtm/bugs.c:80 lkdtm_WARNING+0x10/0x20\n")
    splats = watcher.poll()
    assert len(splats) == 1
    assert splats[0].lines == ["[   12.3] WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:80 lkdtm_WARNING+0x10/0x20"]
    assert splats[0].lineno == 2


def test_watcher_reads_only_new_bytes_on_each_poll(tmp_path):
    log = tmp_path / "console.log"
    watcher = ConsoleWatcher(log)
    append(log, ("\n".join(WARNING_SPLAT) + "\n").encode())
    assert len(watcher.poll()) == 1
    assert len(watcher.poll()) == 1  # nothing new: the same splat is not found twice


def test_watcher_mark_and_since_return_only_new_splats(tmp_path):
    log = tmp_path / "console.log"
    watcher = ConsoleWatcher(log)
    append(log, ("\n".join(WARNING_SPLAT) + "\n").encode())
    mark = watcher.mark()
    assert mark == 1
    assert watcher.since(mark) == []
    append(log, b"[   30.0] ok\n[   31.0] UBSAN: shift-out-of-bounds in net/core/dev.c:1\n")
    new = watcher.since(mark)
    assert [s.kind for s in new] == ["UBSAN"]
    assert new[0].lineno == len(WARNING_SPLAT) + 2


def test_watcher_on_missing_file_returns_nothing(tmp_path):
    watcher = ConsoleWatcher(tmp_path / "not-yet.log")
    assert watcher.poll() == []
    assert watcher.since(watcher.mark()) == []
    assert watcher.text() == ""
    assert watcher.tail() == ""


def test_watcher_tail_gives_last_lines(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("a\nb\nc\nd\n")
    assert ConsoleWatcher(log).tail(2) == "c\nd"
