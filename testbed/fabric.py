"""The host side of a run's network: a private namespace, a bridge, taps.

Everything lives in a network namespace named after the run id, so the
host's own interfaces are never touched and deleting the namespace removes
all of it. QEMU processes are started inside the namespace (nsenter) to
open their taps there.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FabricError

NETNS_PREFIX = "prism-"
BRIDGE = "br0"


def new_run_id() -> str:
    """Short, unique per run, and safe in interface and namespace names."""
    return f"{os.getpid() % 0xFFFF:04x}{secrets.token_hex(2)}"


def runtime_dir(run_id: str) -> Path:
    """Sockets and logs of a run's machines; short paths (unix socket limit)."""
    base = Path("/run/prism-testbed") if os.access("/run", os.W_OK) else Path(f"/tmp/prism-testbed-{os.getuid()}")
    return base / run_id


def ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FabricError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Fabric:
    """A run's namespace with one bridge; taps are added per VM NIC."""

    run_id: str
    taps: list[str] = field(default_factory=list)
    _created: bool = False

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.run_id}"

    def __enter__(self) -> Fabric:
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def create(self) -> None:
        if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
            raise FabricError("/dev/net/tun is not usable: taps need it (and root or CAP_NET_ADMIN)")
        ip("netns", "add", self.netns)
        self._created = True
        try:
            ip("link", "set", "lo", "up", netns=self.netns)
            ip("link", "add", BRIDGE, "type", "bridge", netns=self.netns)
            ip("link", "set", BRIDGE, "up", netns=self.netns)
        except FabricError:
            self.destroy()
            raise

    def add_tap(self, queues: int) -> str:
        """A new multiqueue tap on the bridge; its name is unique in the netns."""
        name = f"tap{len(self.taps)}"
        ip("tuntap", "add", "dev", name, "mode", "tap", *(["multi_queue"] if queues > 1 else []), netns=self.netns)
        self.taps.append(name)
        ip("link", "set", name, "master", BRIDGE, "up", netns=self.netns)
        return name

    def destroy(self) -> None:
        """Delete the namespace and with it every tap and bridge in it."""
        if self._created:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
            self._created = False
            self.taps.clear()
