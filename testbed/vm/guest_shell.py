"""Interactive shells in the VMs of an `up` deployment, over a console port.

In `up` mode each VM has a virtio console (the guest's /dev/hvc0) on a unix
socket in its run directory. A loop in the guest keeps one shell session
waiting on it: the session reads one request line (which shell: the VM's,
or a container's through `crun exec --tty`, and the terminal's size) and
then becomes that shell, with hvc0 as its controlling terminal, so line
editing, job control and Ctrl-C work. When it ends, the loop writes an
invisible marker carrying its exit status and starts the next session.

The host side (`attach`) puts the local terminal in raw mode and copies
bytes both ways until that marker arrives. Limits: one client per VM at a
time (QEMU's socket chardev takes one), no file transfer, and the console
is a serial line (no SIGWINCH: the size is sent once at the start).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import socket
import sys
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from ..core.errors import RunError

DEVICE = "/dev/hvc0"
STATE_DIR = "/run/prism-shell"
DETACH = b"\x1d"  # Ctrl-]
_END = re.compile(rb"\x1b\]prism-testbed;end;(\d+)\x07")

# One session: read the request, become the shell asked for.
SESSION = r"""
echo $$ > /run/prism-shell/pid
stty -echo
echo idle > /run/prism-shell/state
IFS=' ' read -r target rows cols term || exit 0
echo busy > /run/prism-shell/state
stty sane
[ -n "$rows" ] && stty rows "$rows" cols "$cols"
export TERM="${term:-vt100}" HOME=/root
cd /root 2>/dev/null || cd /
if [ "$target" = "-" ]; then
    PS1="$(hostname):\w# " exec /bin/bash --norc -i
fi
exec crun exec --tty --env PATH="$PATH" --env TERM="$TERM" --env HOME=/root --env PS1="$target:\w# " \
    "$target" /bin/bash --norc -i
"""


# Keeps a session waiting on the console; reports how each one ended.
LOOP = r"""
while :; do
    setsid -w -c sh /run/prism-shell/session.sh </dev/hvc0 >/dev/hvc0 2>&1
    printf '\033]prism-testbed;end;%d\007' $? >/dev/hvc0
    echo ended > /run/prism-shell/state
    sleep 0.1
done
"""


def start_script() -> str:
    """Guest shell (run through the agent) that starts the session loop, detached."""
    return "\n".join([
        "set -e",
        f"test -c {DEVICE}",
        f"mkdir -p {STATE_DIR}",
        f"cat > {STATE_DIR}/session.sh <<'PRISM_EOF'\n{SESSION.strip()}\nPRISM_EOF",
        f"cat > {STATE_DIR}/loop.sh <<'PRISM_EOF'\n{LOOP.strip()}\nPRISM_EOF",
        # the agent's pipes must not stay open in the loop, or guest-exec never ends
        f"setsid sh {STATE_DIR}/loop.sh </dev/null >/dev/null 2>&1 &",
    ]) + "\n"


def reset_script(wait: float = 5.0) -> str:
    """Guest shell that ends a session left running (a client that detached or died)
    and waits until a fresh one is waiting for its request."""
    steps = int(wait / 0.05)
    return "\n".join([
        f"cd {STATE_DIR}",
        "old=$(cat pid 2>/dev/null || true)",
        'if [ "$(cat state 2>/dev/null)" = idle ]; then exit 0; fi',
        'if [ -n "$old" ]; then pkill -KILL -s "$old" || true; fi',
        f"for i in $(seq {steps}); do",
        '  if [ "$(cat state 2>/dev/null)" = idle ] && [ "$(cat pid 2>/dev/null)" != "$old" ]; then exit 0; fi',
        "  sleep 0.05",
        "done",
        "echo 'no shell session came back on the console' >&2",
        "exit 1",
    ]) + "\n"


def request_line(target: str | None) -> bytes:
    """What the client sends first: which shell, and the local terminal's size and type."""
    size = shutil.get_terminal_size((80, 24))
    term = os.environ.get("TERM", "vt100") if sys.stdin.isatty() else "dumb"
    return f"{target or '-'} {size.lines} {size.columns} {term}\n".encode()


@contextlib.contextmanager
def exclusive(lock: Path, vm: str):
    """One client per VM: QEMU's socket chardev would leave a second one hanging."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"vm {vm}: another `prism-testbed shell` is attached to it (one at a time)") from None
        yield


def attach(sock_path: Path, target: str | None, reset: Callable[[], None], vm: str) -> int:
    """Run one shell session on a VM's console; its exit status (0 after a detach)."""
    with exclusive(sock_path.with_name("shell.lock"), vm):
        reset()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(sock_path))
        except OSError as exc:
            sock.close()
            raise RunError(f"vm {vm}: cannot reach its console socket {sock_path}: {exc.strerror}") from None
        interactive = sys.stdin.isatty()
        saved = termios.tcgetattr(0) if interactive else None
        try:
            sock.sendall(request_line(target))
            if interactive:
                what = f"container {target} on vm {vm}" if target else f"vm {vm}"
                sys.stderr.write(f"[{what}: `exit` or Ctrl-D ends the shell, Ctrl-] detaches]\r\n")
                tty.setraw(0)
            status = _pump(sock, interactive)
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            sock.close()
        if status is None:
            reset()  # detached: end the session so the next client starts clean
            return 0
        return status


def _pump(sock: socket.socket, interactive: bool, settle: float = 10.0) -> int | None:
    """Copy stdin to the console and the console to stdout until the session ends.

    Returns the session's exit status, or None when the user detached.
    Input is held back until the shell has printed something (its prompt):
    bytes that reach the tty before bash's line editor runs are read in
    canonical mode, where an EOF character would be lost. Piped input ends
    with an `exit` line, which works whether or not a command is running.
    """
    pending = b""
    shell_started, stdin_open = False, True
    deadline = time.monotonic() + settle
    while True:
        inputs: list = [sock]
        if stdin_open and (shell_started or time.monotonic() > deadline):
            inputs.append(0)
        readable, _, _ = select.select(inputs, [], [], 0.2)
        if 0 in readable:
            data = os.read(0, 4096)
            if interactive and DETACH in data:
                return None
            if data:
                sock.sendall(data)
            else:
                stdin_open = False
                sock.sendall(b"\nexit\n")
        if sock in readable:
            data = sock.recv(65536)
            if not data:
                raise RunError("the VM's console closed (is the deployment still up?)")
            shell_started = True
            pending += data
            found = _END.search(pending)
            if found:
                _write(pending[:found.start()])
                return int(found.group(1))
            # keep a possible partial marker for the next read
            cut = pending.rfind(b"\x1b")
            keep = pending[cut:] if cut != -1 and len(pending) - cut < 40 else b""
            _write(pending[:len(pending) - len(keep)])
            pending = keep


def _write(data: bytes) -> None:
    if data:
        os.write(1, data)
