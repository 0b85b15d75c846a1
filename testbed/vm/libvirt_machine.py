"""One libvirt domain, owned from createXML to destroy: the libvirt backend's Machine.

It offers what Deployment, the fixtures and the cases use of Machine (name,
spec, files, console, run, wait_ready, splats, shutdown, how_to_reach,
boot_seconds, crashes), so either backend fits under the same topology.

* Lifecycle: a transient domain created paused (like -S) with AUTODESTROY,
  so libvirtd destroys it as soon as this process's connection closes: a
  killed run leaves no domain behind, locally or over qemu+ssh.
* Console: read through libvirt (virDomainOpenConsole) into the local
  console log from before the first guest instruction, so splats are
  watched the same way and no path on the libvirt host is needed. The
  blocking read has a connection of its own: sharing one with the agent
  calls, an agent call was seen to hang for good (about one boot in four).
* Guest agent: through libvirt (virDomainQemuAgentCommand). libvirtd itself
  connects to the channel named org.qemu.guest_agent.0, which is the name
  the guest looks for, and a QEMU socket chardev takes one client; the same
  call also works over a remote URI, where a unix socket could not be reached.
* NICs: taps made in the host's namespace (Fabric.add_host_tap), opened by
  QEMU there, then moved into the run's namespace (Fabric.adopt_host_tap).
* Deadlines: libvirt-python's calls block in C with no timeout of their own
  (libvirtd was seen to stall for minutes probing a QEMU's capabilities), so
  every call goes through `bounded`, which gives up with a MachineError.
* Failures name libvirt's own domain log (/var/log/libvirt/qemu/NAME.log),
  which has QEMU's stderr when the console has nothing yet.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..core.errors import ConfigError, GuestCommandError, GuestCommandTimeout, MachineError
from .guest_agent import AgentCommands
from .libvirt_xml import domain_xml
from .machine_common import HostTaps, MachineCommon
from .qemu_cmd import MachineSpec, RunFiles
from .splat import ConsoleWatcher

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # the `libvirt` extra is optional
    libvirt = None
    libvirt_qemu = None

DEFAULT_URI = "qemu:///system"
# One libvirt call's deadline. A healthy libvirtd answers in well under a
# second, createXML of a paused TCG domain in a few; 60 s is far past any of
# that and short of a test's budget, so a stuck libvirtd costs a minute with
# a message, not the suite.
CALL_SECONDS = 60.0
# libvirt's per-domain log (QEMU's command line and stderr) on a local host
DOMAIN_LOG_DIR = Path("/var/log/libvirt/qemu")

T = TypeVar("T")


def bounded(what: str, call: Callable[[], T], seconds: float = CALL_SECONDS) -> T:
    """call() with a deadline: its value, its own exception, or MachineError naming what hung.

    The call runs in a daemon thread: a libvirt call cannot be interrupted,
    so on a timeout the thread is left to finish (or not) on its own while
    the caller gets the error.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller as is
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"libvirt {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise MachineError(f"libvirt: {what} did not return within {seconds:g}s "
                           "(libvirtd stuck? its log: journalctl -u libvirtd or /var/log/libvirt/)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def domain_log_tail(domain_name: str, lines: int = 10, log_dir: Path = DOMAIN_LOG_DIR) -> str:
    """The end of libvirt's log for a domain, or a note saying why there is none."""
    path = log_dir / f"{domain_name}.log"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no libvirt domain log: {path}: {exc.strerror})"
    tail = text.splitlines()[-lines:]
    return f"libvirt's domain log {path}, last lines:\n" + "\n".join(tail) if tail else f"(libvirt's domain log {path} is empty)"


def connect(uri: str, seconds: float = CALL_SECONDS):
    """An open libvirt connection; a one-line error when there is none."""
    if libvirt is None:
        raise ConfigError("the libvirt backend needs libvirt-python: run tools/setup (it installs the 'libvirt' extra)")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised, not printed
    try:
        return bounded(f"connect to {uri}", lambda: libvirt.open(uri), seconds)
    except libvirt.libvirtError as exc:
        raise MachineError(f"libvirt {uri}: cannot connect: {exc.get_error_message()} "
                           "(is libvirtd running? tools/start-libvirtd starts it)") from None


def probe(uri: str = DEFAULT_URI, seconds: float = 30.0) -> tuple[bool, str]:
    """Can libvirtd at uri run this backend's domains (type qemu, x86_64)? And why, in one line.

    Asks for the domain capabilities, which makes libvirtd probe QEMU: the
    step seen to stall on a host whose /dev/kvm cannot run guests.
    """
    try:
        conn = connect(uri, seconds)
    except (ConfigError, MachineError) as exc:
        return False, str(exc)
    try:
        version = bounded("getLibVersion", conn.getLibVersion, seconds)
        caps = ET.fromstring(bounded("getDomainCapabilities",
                                     lambda: conn.getDomainCapabilities(None, "x86_64", None, "qemu", 0), seconds))
    except MachineError as exc:
        return False, str(exc)
    except libvirt.libvirtError as exc:
        return False, f"libvirt {uri}: no TCG (type qemu) x86_64 domains: {exc.get_error_message()}"
    finally:
        with contextlib.suppress(libvirt.libvirtError, MachineError):
            bounded(f"close {uri}", conn.close, 5)
    emulator = caps.findtext("path") or "an unnamed emulator"
    major, minor, micro = version // 1_000_000, version // 1000 % 1000, version % 1000
    return True, f"libvirt {major}.{minor}.{micro} at {uri}: TCG (type qemu) x86_64 domains with {emulator}"


def secmodels(conn) -> list[str]:
    """The security drivers the libvirt host runs (dac, selinux, apparmor, none)."""
    caps = ET.fromstring(bounded("getCapabilities", conn.getCapabilities))
    return [m.text for m in caps.iterfind("./host/secmodel/model") if m.text]


def same_host(conn) -> bool:
    """True when the libvirt host is this machine (the fabric's taps are made here)."""
    return bounded("getHostname", conn.getHostname) == socket.gethostname()


class LibvirtAgent(AgentCommands):
    """Guest agent commands through libvirt's own agent connection."""

    def __init__(self, domain, name: str):
        self.domain = domain
        self.name = name

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10.0):
        message: dict = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        seconds = max(1, math.ceil(timeout))
        try:
            # libvirt's own agent timeout, and ours past it: the call also waits for the domain's job lock
            reply = bounded(f"agent {command} on {self.name}",
                            lambda: libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(message), seconds, 0),
                            seconds + 10)
        except libvirt.libvirtError as exc:
            what = f"{self.name}: agent {command}: {exc.get_error_message()}"
            if exc.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
                raise GuestCommandTimeout(what) from None
            if exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
                raise MachineError(what) from None
            raise GuestCommandError(what) from None
        return json.loads(reply).get("return")


class LibvirtMachine(MachineCommon):
    """A running VM as a libvirt domain: libvirt for control, its agent connection for commands."""

    def __init__(self, spec: MachineSpec, run_dir: Path, boot_timeout: float = 90.0, uri: str = DEFAULT_URI,
                 domain_name: str | None = None, fabric: HostTaps | None = None):
        self.spec = spec
        self.files = RunFiles(run_dir)
        self.boot_timeout = boot_timeout
        self.uri = uri
        self.domain_name = domain_name or f"prism-{spec.name}"
        self.fabric = fabric  # moves the NICs' host taps onto its bridge once QEMU holds them
        self.console = ConsoleWatcher(self.files.console)
        self.boot_seconds: float | None = None
        self.crashes: list[str] = []
        self.xml = ""
        self._conn = None
        self._domain = None
        self._console_conn = None
        self._stream = None
        self._reader: threading.Thread | None = None
        self._agent: LibvirtAgent | None = None
        self._started = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def xml_path(self) -> Path:
        return self.files.dir / "domain.xml"

    # --- lifecycle -----------------------------------------------------------------

    def _emulator_died(self) -> str | None:
        """The domain vanishing during boot: libvirt does not say whether a signal ended its QEMU."""
        if self._domain is not None and not self.is_running():
            return f"domain {self.domain_name} ended"
        return None

    def _before_relaunch(self) -> None:
        """The taps were moved into the run's namespace; a new domain opens them in the host's."""
        if self.fabric is not None:
            for nic in self.spec.nics:
                self.fabric.release_host_tap(nic.tap)

    def launch(self) -> None:
        """Create the domain paused, attach the console, wire the NICs; MachineError names the cause."""
        self.files.dir.mkdir(parents=True, exist_ok=True)
        self.files.console.unlink(missing_ok=True)
        self._conn = connect(self.uri)
        if self.spec.nics and not same_host(self._conn):
            raise ConfigError(f"libvirt {self.uri}: host {bounded('getHostname', self._conn.getHostname)} is not this machine; "
                              "NICs need the run's fabric on the libvirt host (boot without NICs there)")
        self.xml = domain_xml(self.spec, self.domain_name, secmodels(self._conn))
        self.xml_path.write_text(self.xml + "\n")
        self._started = time.monotonic()
        flags = libvirt.VIR_DOMAIN_START_PAUSED | libvirt.VIR_DOMAIN_START_AUTODESTROY
        try:
            self._domain = bounded(f"createXML {self.domain_name}", lambda: self._conn.createXML(self.xml, flags))
            self._console_conn = connect(self.uri)
            self._stream = bounded("newStream", lambda: self._console_conn.newStream(0))
            bounded(f"openConsole {self.domain_name}",
                    lambda: self._console_conn.lookupByUUID(self._domain.UUID()).openConsole(
                        None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE))
        except libvirt.libvirtError as exc:
            said = exc.get_error_message()
            self.files.qemu_log.write_text(said + "\n")
            raise MachineError(f"{self.name}: libvirt could not start domain {self.domain_name} on {self.uri}: "
                               f"{said.splitlines()[0] if said else 'no reason given'}; XML in {self.xml_path}; "
                               f"{self._domain_log_path()}") from None
        self._reader = threading.Thread(target=self._read_console, args=(self._stream,),
                                        name=f"console-{self.domain_name}", daemon=True)
        self._reader.start()
        if self.fabric is not None:
            for nic in self.spec.nics:
                self.fabric.adopt_host_tap(nic.tap)

    def _read_console(self, stream) -> None:
        """Copy the serial console into the local log until the domain ends."""
        with open(self.files.console, "ab", buffering=0) as log, contextlib.suppress(Exception):
            while True:
                data = stream.recv(65536)
                if not isinstance(data, bytes) or not data:
                    return
                log.write(data)

    def wait_ready(self) -> float:
        """Resume the guest and wait for its agent; seconds from launch to its answer.

        libvirt reports the agent unconnected until the guest opens its port
        (it follows VSERPORT_CHANGE), so polling guest-ping sends nothing the
        guest would have to drain later.
        """
        deadline = self._started + self.boot_timeout
        try:
            bounded(f"resume {self.domain_name}", self._domain.resume)
        except libvirt.libvirtError as exc:
            raise MachineError(f"{self.name}: resume failed: {exc.get_error_message()}; {self._domain_log_path()}") from None
        agent = LibvirtAgent(self._domain, self.name)
        while True:
            self._check_boot()
            try:
                agent.execute("guest-ping", timeout=2)
                break
            except GuestCommandError as exc:
                if time.monotonic() > deadline:
                    raise MachineError(f"{self.name}: the guest agent did not answer within {self.boot_timeout:.0f}s "
                                       f"({exc}); {self._console_said()}\n{self._domain_log()}") from None
            time.sleep(0.1)
        self._agent = agent
        self.boot_seconds = time.monotonic() - self._started
        return self.boot_seconds

    def _check_boot(self) -> None:
        fatal = [s for s in self.console.poll() if s.kind == "panic"]
        if fatal:
            raise MachineError(f"{self.name}: kernel panic during boot: {fatal[0].title}")
        if not self.is_running():
            raise MachineError(f"{self.name}: domain {self.domain_name} ended during boot; {self._console_said()}\n"
                               f"{self._domain_log()}")

    def _console_said(self) -> str:
        """The console's last lines, or that it stayed empty (then the domain log is the witness)."""
        tail = self.console.tail(20)
        if tail.strip():
            return f"console tail:\n{tail}"
        size = self.files.console.stat().st_size if self.files.console.exists() else 0
        return f"the console ({self.files.console}) has {size} bytes: the guest printed nothing"

    def _domain_log_path(self) -> str:
        """Where libvirt's log of this domain is, in a few words (for one-line errors)."""
        if not self.uri.startswith("qemu:///"):
            return f"libvirt's domain log is on the libvirt host of {self.uri}"
        return f"libvirt's domain log: {DOMAIN_LOG_DIR / (self.domain_name + '.log')}"

    def _domain_log(self) -> str:
        if self._conn is not None and not self.uri.startswith("qemu:///"):
            return f"(libvirt's domain log is on the libvirt host of {self.uri})"
        return domain_log_tail(self.domain_name)

    def is_running(self) -> bool:
        if self._domain is None:
            return False
        try:
            return bool(bounded(f"isActive {self.domain_name}", self._domain.isActive))
        except libvirt.libvirtError:
            return False  # a transient domain that ended is gone

    def shutdown(self, timeout: float = 5.0) -> None:
        """Destroy the domain and close the connection; idempotent."""
        self._agent = None
        if self._domain is not None:
            with contextlib.suppress(libvirt.libvirtError, MachineError):  # AUTODESTROY still ends it with us
                bounded(f"destroy {self.domain_name}", self._domain.destroy)
        if self._reader is not None:
            self._reader.join(timeout)  # the stream ends with the domain
            self._reader = None
        if self._stream is not None:
            with contextlib.suppress(libvirt.libvirtError, MachineError):
                bounded("stream abort", self._stream.abort, timeout)
            self._stream = None
        for conn in (self._console_conn, self._conn):  # closing the last ends the domain (AUTODESTROY)
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError, MachineError):
                    bounded(f"close {self.uri}", conn.close, timeout)
        self._console_conn = self._conn = None
        self._domain = None

    # --- control ---------------------------------------------------------------------

    def how_to_reach(self, agent_free: bool = True) -> str:
        """For --keep and describe(): the domain, and where its console goes.

        agent_free is the QEMU backend's concern (its agent socket takes one
        client); libvirt shares its agent connection, so it changes nothing.
        """
        return (f"{self.name}: libvirt domain {self.domain_name} on {self.uri} (virsh -c '{self.uri}' dumpxml "
                f"{self.domain_name}; it ends with this process: AUTODESTROY); console log {self.files.console} "
                "(the testbed holds the console: `virsh console --force` takes it over)")
