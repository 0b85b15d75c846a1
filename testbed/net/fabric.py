"""The host side of a run's network: a private namespace, a bridge, taps.

Everything lives in a network namespace named after the run id, so the
host's own interfaces are never touched and deleting the namespace removes
all of it. QEMU processes are started inside the namespace (nsenter) to
open their taps there. libvirtd cannot start QEMU inside the namespace, so
for the libvirt backend a tap is made in the host's own namespace under a
run-unique name (`pt<run id><n>`), opened there by QEMU, then moved into the
run's namespace: a tap's open queues survive the move. A traffic port (a veth on the bridge, with its own
underlay address and VXLAN endpoint) lets host-side tools act as a node of
the overlay. A run records its owner; `reap_stale` removes what runs whose
owner died left behind (those host taps included), and nothing it has no
record of.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import cmd
from ..core.errors import CommandError, FabricError
from .topology import VXLAN_PORT, bridge_name, vxlan_name

NETNS_PREFIX = "prism-"
BRIDGE = "br0"
TRAFFIC_PORT = "tp0"
HOST_TAP_PREFIX = "pt"  # taps made in the host's namespace: pt<run id><n>
_HOST_TAP = re.compile(rf"^{HOST_TAP_PREFIX}([0-9a-f]{{8}})[0-9]+$")
IFNAMSIZ = 15
KEEP_MARKER = "keep"  # a run left up on purpose (--keep): the reaper spares it
IP_TIMEOUT = 30.0  # seconds for one `ip`/`bridge` command: they return at once unless the host is stuck


def new_run_id() -> str:
    """Short, unique per run, and safe in interface and namespace names."""
    return f"{os.getpid() % 0xFFFF:04x}{secrets.token_hex(2)}"


def runtime_base() -> Path:
    return Path("/run/prism-testbed") if os.access("/run", os.W_OK) else Path(f"/tmp/prism-testbed-{os.getuid()}")


def runtime_dir(run_id: str) -> Path:
    """Sockets and logs of a run's machines; short paths (unix socket limit)."""
    return runtime_base() / run_id


def claim_run_dir(run_id: str) -> Path:
    """The run's directory, with this process recorded as its owner.

    Directory and owner file appear in one rename (or the owner file is
    replaced atomically), so a reaper in another process (a pytest-xdist
    worker, another run) never sees a run directory without a live owner.
    """
    final = runtime_dir(run_id)
    line = f"{os.getpid()} {_process_start(os.getpid())}\n"
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{run_id}."))
        (tmp / "owner").write_text(line)
        try:
            os.rename(tmp, final)
            return final
        except OSError:  # created meanwhile: fall through and take it over
            shutil.rmtree(tmp, ignore_errors=True)
    tmp_owner = final / f".owner.{os.getpid()}"
    tmp_owner.write_text(line)
    os.replace(tmp_owner, final / "owner")
    return final


def ip(*args: str, netns: str | None = None) -> str:
    """`ip` (with -n netns); its output, or FabricError: the fabric could not be set up as asked."""
    try:
        return cmd.run(["ip", *(["-n", netns] if netns else []), *args], timeout=IP_TIMEOUT, check=True).stdout
    except CommandError as exc:
        raise FabricError(str(exc)) from None


def _ip_quietly(*args: str) -> None:
    """`ip` for cleanup: whatever is already gone stays gone; a hang still ends at the deadline."""
    with contextlib.suppress(CommandError):
        cmd.run(["ip", *args], timeout=IP_TIMEOUT)


def _process_start(pid: int) -> str | None:
    """The start time of pid (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Fabric:
    """A run's namespace with one bridge; taps are added per VM NIC."""

    run_id: str
    mtu: int = 1500
    taps: list[str] = field(default_factory=list)
    host_taps: list[str] = field(default_factory=list)  # in the host's namespace, not yet moved
    _created: bool = False
    _taps_made: int = 0  # names are never reused within a run

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
        reap_stale()
        claim_run_dir(self.run_id)
        ip("netns", "add", self.netns)
        self._created = True
        try:
            ip("link", "set", "lo", "up", netns=self.netns)
            ip("link", "add", BRIDGE, "mtu", str(self.mtu), "type", "bridge", netns=self.netns)
            ip("link", "set", BRIDGE, "up", netns=self.netns)
        except FabricError:
            self.destroy()
            raise

    def add_tap(self, queues: int) -> str:
        """A new multiqueue tap on the bridge; its name is unique in the netns."""
        name = f"tap{self._taps_made}"
        self._taps_made += 1
        ip("tuntap", "add", "dev", name, "mode", "tap", *(["multi_queue"] if queues > 1 else []), netns=self.netns)
        self.taps.append(name)
        ip("link", "set", name, "mtu", str(self.mtu), "master", BRIDGE, "up", netns=self.netns)
        return name

    def remove_tap(self, name: str) -> None:
        """Delete a tap whose QEMU has stopped (a session's fabric outlives its VMs)."""
        if name in self.taps:
            ip("link", "del", name, netns=self.netns)
            self.taps.remove(name)
        elif name in self.host_taps:
            ip("link", "del", name)
            self.host_taps.remove(name)

    def add_host_tap(self, queues: int) -> str:
        """A new multiqueue tap in the host's own namespace, for a QEMU libvirtd starts.

        Its name carries the run id, so only this run's taps are ever touched
        there; adopt_host_tap moves it onto the bridge once QEMU holds it.
        """
        if not self._created:
            raise FabricError(f"fabric {self.netns}: create it before adding taps")
        name = f"{HOST_TAP_PREFIX}{self.run_id}{self._taps_made}"
        if not _HOST_TAP.fullmatch(name) or len(name) > IFNAMSIZ:
            raise FabricError(f"run id {self.run_id!r}: host tap name {name!r} must match {_HOST_TAP.pattern}")
        self._taps_made += 1
        ip("tuntap", "add", "dev", name, "mode", "tap", *(["multi_queue"] if queues > 1 else []))
        self.host_taps.append(name)
        try:
            ip("link", "set", name, "mtu", str(self.mtu))
        except FabricError:
            self.remove_tap(name)
            raise
        return name

    def adopt_host_tap(self, name: str) -> None:
        """Move a host tap (its queues held open by QEMU) into the run's namespace, onto the bridge."""
        ip("link", "set", name, "netns", self.netns)
        self.host_taps.remove(name)
        self.taps.append(name)
        ip("link", "set", name, "master", BRIDGE, "up", netns=self.netns)

    def release_host_tap(self, name: str) -> None:
        """Move an adopted tap back to the host's namespace (for a relaunch, which opens it there)."""
        if name in self.taps:
            ip("link", "set", name, "netns", str(os.getpid()), netns=self.netns)  # this process's netns
            self.taps.remove(name)
            self.host_taps.append(name)

    def add_traffic_port(self, address: str, prefix: int) -> str:
        """A veth on the bridge with its own underlay address, for host-side tools."""
        ip("link", "add", TRAFFIC_PORT, "mtu", str(self.mtu), "type", "veth", "peer", "name", f"{TRAFFIC_PORT}-br",
           netns=self.netns)
        ip("link", "set", f"{TRAFFIC_PORT}-br", "master", BRIDGE, "up", netns=self.netns)
        ip("addr", "add", f"{address}/{prefix}", "dev", TRAFFIC_PORT, netns=self.netns)
        ip("link", "set", TRAFFIC_PORT, "up", netns=self.netns)
        return TRAFFIC_PORT

    def add_vtep(self, vni: int, local: str, overlay_address: str, prefix: int, mtu: int, mac: str,
                 peers: list[str], remote_macs: list[tuple[str, str]], overlay_address6: str | None = None) -> str:
        """The host's VXLAN endpoint on the traffic port: vxlan + bridge + address.

        Laid out like a guest's (learning off, static FDB): flood entries for
        every peer VTEP and one entry per remote container MAC.
        """
        vx, br = vxlan_name(vni), bridge_name(vni)
        ip("link", "add", vx, "mtu", str(mtu), "type", "vxlan", "id", str(vni), "local", local, "dstport", str(VXLAN_PORT),
           "nolearning", "dev", TRAFFIC_PORT, netns=self.netns)
        ip("link", "add", br, "mtu", str(mtu), "address", mac, "type", "bridge", netns=self.netns)
        ip("link", "set", vx, "master", br, "up", netns=self.netns)
        ip("addr", "add", f"{overlay_address}/{prefix}", "dev", br, netns=self.netns)
        if overlay_address6:
            ip("addr", "add", f"{overlay_address6}/64", "dev", br, "nodad", netns=self.netns)
        ip("link", "set", br, "up", netns=self.netns)
        for peer in peers:
            _bridge("fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", peer, netns=self.netns)
        for mac, peer in remote_macs:
            _bridge("fdb", "add", mac, "dev", vx, "dst", peer, netns=self.netns)
        return br

    def destroy(self) -> None:
        """Delete the namespace and with it every tap, veth and bridge in it, and the host taps."""
        for name in list(self.host_taps):
            _ip_quietly("link", "del", name)
            self.host_taps.remove(name)
        if self._created:
            _ip_quietly("netns", "del", self.netns)
            self._created = False
            self.taps.clear()
        with contextlib.suppress(OSError):
            (runtime_dir(self.run_id) / "owner").unlink()
        with contextlib.suppress(OSError):  # a fabric used on its own leaves no empty run dir behind
            runtime_dir(self.run_id).rmdir()


def _bridge(*args: str, netns: str) -> None:
    try:
        cmd.run(["bridge", *args], netns=netns, timeout=IP_TIMEOUT, check=True)
    except CommandError as exc:
        raise FabricError(str(exc)) from None


# --- the reaper ------------------------------------------------------------------------


def _owner_alive(run_id: str) -> bool:
    try:
        pid_text, start = (runtime_dir(run_id) / "owner").read_text().split()
    except (OSError, ValueError):
        return False
    return _process_start(int(pid_text)) == start


def _netns_names() -> list[str]:
    out = cmd.run(["ip", "netns", "list"], timeout=IP_TIMEOUT).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _host_taps() -> dict[str, str]:
    """Testbed taps in the host's own namespace: name -> run id."""
    out = cmd.run(["ip", "-o", "link", "show", "type", "tun"], timeout=IP_TIMEOUT).stdout
    names = [line.split(": ", 2)[1].split("@")[0] for line in out.splitlines() if ": " in line]
    return {name: m.group(1) for name in names if (m := _HOST_TAP.fullmatch(name))}


def _qemu_pids_of(run_id: str) -> list[int]:
    """QEMU processes whose command line names this run's directory."""
    return [user.pid for user in qemu_users() if user.run_id == run_id]


def _recorded_runs() -> set[str]:
    """Run ids the testbed recorded: directories under the runtime base (claimed with an owner file)."""
    if not runtime_base().is_dir():
        return set()
    return {p.name for p in runtime_base().iterdir() if p.is_dir() and not p.name.startswith(".")}


@dataclass(frozen=True)
class QemuUser:
    """A live QEMU and the run it belongs to (None: not one the testbed can name)."""

    pid: int
    run_id: str | None
    argv: tuple[str, ...]

    def uses(self, path: Path) -> bool:
        """Does the command line name a file at or under path (its kernel, its image)?"""
        prefix = str(path).rstrip("/")
        return any(p == prefix or p.startswith(prefix + "/") or f"={prefix}/" in p or p.endswith(f"={prefix}")
                   for a in self.argv for p in a.split(","))


def qemu_users() -> list[QemuUser]:
    """Every live QEMU on the host, with the testbed run whose directory its command line names."""
    base = str(runtime_base()) + "/"
    users = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = tuple(a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a)
        except OSError:
            continue
        if not argv or "qemu-system" not in argv[0]:
            continue
        run_id = next((a.split(base, 1)[1].split("/", 1)[0] for a in argv if base in a), None)
        users.append(QemuUser(int(proc.name), run_id, argv))
    return users


def reap_stale() -> list[str]:
    """Remove what dead runs left: their QEMUs, namespaces, host taps and run directories.

    Only runs the testbed recorded are candidates: a run's directory (with
    its owner file) exists before its namespace, taps and QEMUs, and goes
    after them, so a `prism-*` namespace or `pt*` tap with no run directory
    was not made by the testbed and is left alone (see `unrecorded()`). A
    recorded run is dead when its owner process no longer exists (a pid
    reused by another process has another start time). Live runs and runs
    kept with --keep are spared. Returns what it reaped.
    """
    reaped = []
    host_taps = _host_taps()
    for run_id in sorted(_recorded_runs()):
        if _owner_alive(run_id) or (runtime_dir(run_id) / KEEP_MARKER).exists():
            continue
        pids = _qemu_pids_of(run_id)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.05)
        if f"{NETNS_PREFIX}{run_id}" in _netns_names():
            _ip_quietly("netns", "del", f"{NETNS_PREFIX}{run_id}")
        taps = sorted(name for name, owner in host_taps.items() if owner == run_id)
        for name in taps:
            _ip_quietly("link", "del", name)
        shutil.rmtree(runtime_dir(run_id), ignore_errors=True)
        reaped.append(f"run {run_id}: {len(pids)} QEMU processes, netns {NETNS_PREFIX}{run_id}"
                      + (f", host taps {' '.join(taps)}" if taps else ""))
    return reaped


def unrecorded() -> list[str]:
    """Namespaces and host taps named like the testbed's but with no run record: not ours to remove."""
    recorded = _recorded_runs()
    names = [name for name in _netns_names()
             if name.startswith(NETNS_PREFIX) and name[len(NETNS_PREFIX):] not in recorded]
    names += [name for name, run_id in _host_taps().items() if run_id not in recorded]
    return sorted(names)
