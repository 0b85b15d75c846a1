"""pytest plugin: options that select the kernel, fixtures that boot VMs.

Modelled on labgrid's plugin: session-scoped fixtures for what is expensive
(kernels, the image, the accelerator probe), validated markers for what a
test asks of its VM, and a hook that fails a test when any guest console
shows a kernel splat while it ran, even if its own assertions passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import pytest

from ..build.image import build_image, load_spec
from ..build.kernel import Kernel, obtain
from ..core.errors import ConfigError, TestbedError
from ..net import topology as topology_mod
from ..net.backend import Backend
from ..net.deployment import Deployment
from ..net.fabric import KEEP_MARKER, Fabric, new_run_id, runtime_dir
from ..vm import accel as accel_mod
from ..vm.libvirt_machine import DEFAULT_URI
from ..vm.machine import Machine
from ..vm.qemu_cmd import MachineSpec, NicSpec, kernel_args
from ..vm.splat import Splat
from .pytest_options import MACHINE_MARK_KEYS, configure
from .pytest_options import pytest_addoption as pytest_addoption  # a hook: pytest finds it here


def pytest_configure(config: pytest.Config) -> None:
    configure(config)
    config.stash[_STATE] = _State(config)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """kvm_only cases run only when KVM was asked for (CI with nested virtualisation)."""
    if item.get_closest_marker("kvm_only") and item.config.getoption("accel") != "kvm":
        pytest.skip("kvm_only: runs with --accel kvm")


class _State:
    """Per-session plugin state (kept in config.stash, never in globals)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        # Each pytest-xdist worker is its own session: its own run id (so its own
        # netns, taps and run dir) and its own results/<run id>/session.json.
        self.run_id = new_run_id()
        self.worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.results = Path(config.getoption("results", Path("results"))) / self.run_id
        self.machines: dict[Machine, int] = {}  # live machine -> splats already reported
        self.kernels: dict[str, Kernel] = {}
        self.record: dict = {"run_id": self.run_id, "worker": self.worker, "kernels": {}, "accel": {}, "image": None,
                             "boots": []}

    def write_record(self) -> None:
        self.results.mkdir(parents=True, exist_ok=True)
        (self.results / "session.json").write_text(json.dumps(self.record, indent=2, default=str) + "\n")


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every case that uses the kernel runs once per --kernel given, debug_kernel cases on each --debug-kernel too."""
    if "kernel" in metafunc.fixturenames:
        selectors = list(metafunc.config.getoption("kernel") or ["prism"])
        if metafunc.definition.get_closest_marker("debug_kernel"):
            selectors += [k for k in metafunc.config.getoption("debug_kernel") if k not in selectors]
        metafunc.parametrize("kernel", selectors, indirect=True, scope="session")


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = _state(config)
    kernels = config.getoption("kernel") or ["prism"]
    debug = config.getoption("debug_kernel")
    src = config.getoption("kernel_src")
    return [f"prism-testbed: run {state.run_id}, kernel {', '.join(kernels)}"
            + (f" (debug_kernel cases also on {', '.join(debug)})" if debug else "")
            + (f" from tree {src}" if src else "") + f", accel {config.getoption('accel')}, "
            f"backend {_backend_of(config).describe()}, results {state.results}"]


def _backend_of(config: pytest.Config) -> Backend:
    return Backend(config.getoption("backend", "qemu"), config.getoption("libvirt_uri", DEFAULT_URI))


def _visible(request: pytest.FixtureRequest):
    """Let long builds show their progress through pytest's capture."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    return capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()


def _testbed_call(what: str, fn, *args):
    """Call fn; a TestbedError fails the test with its one-line message, no traceback."""
    try:
        return fn(*args)
    except TestbedError as exc:
        message = f"{what}: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """The kernel under test, built (or found in the cache) once per session."""
    state = _state(request.config)
    selector = request.param
    if selector not in state.kernels:
        with _visible(request):
            started = time.monotonic()
            built = _testbed_call(f"kernel {selector}", obtain, selector, request.config.getoption("kernel_src"),
                                  request.config.getoption("kernel_source"))
            print(f"\nprism-testbed: kernel {built.describe()} in {time.monotonic() - started:.1f}s", file=sys.stderr)
        state.kernels[selector] = built
        state.record["kernels"][selector] = {"release": built.release, "cache_hit": built.cache_hit,
                                             "bzimage": str(built.bzimage), "metadata": built.metadata}
        state.write_record()
    return state.kernels[selector]


@pytest.fixture(scope="session")
def guest_image(request: pytest.FixtureRequest):
    """The guest root image, built (or found in the cache) once per session."""
    state = _state(request.config)
    with _visible(request):
        image = _testbed_call("guest image", lambda: build_image(load_spec()))
        print(f"\nprism-testbed: image {image.key} ({'cache hit' if image.cache_hit else 'built'})", file=sys.stderr)
    state.record["image"] = {"key": image.key, "cache_hit": image.cache_hit, "path": str(image.root)}
    state.write_record()
    return image


@pytest.fixture(scope="session")
def accel(request: pytest.FixtureRequest, kernel: Kernel) -> accel_mod.AccelChoice:
    """Accelerator and vhost for this kernel: recorded in every result."""
    state = _state(request.config)
    choice = _testbed_call("accelerator", accel_mod.choose, request.config.getoption("accel"), kernel.bzimage)
    state.record["accel"][kernel.variant] = choice.as_dict()
    state.write_record()
    return choice


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Backend:
    """Who starts the VMs (--backend, --libvirt-uri); a module may override this fixture."""
    choice = _backend_of(request.config)
    _state(request.config).record["backend"] = choice.describe()
    return choice


@pytest.fixture(scope="session")
def fabric(request: pytest.FixtureRequest):
    """The run's private network namespace (bridge and taps)."""
    state = _state(request.config)
    fab = Fabric(state.run_id)
    _testbed_call("host fabric", fab.create)
    yield fab
    if getattr(request.session, "_prism_keep", False):
        (runtime_dir(state.run_id) / KEEP_MARKER).touch()
        print(f"\nprism-testbed --keep: fabric netns {fab.netns} and {runtime_dir(state.run_id)} left in place; "
              f"remove with: ip netns del {fab.netns}", file=sys.stderr)
        return
    fab.destroy()
    shutil.rmtree(runtime_dir(state.run_id), ignore_errors=True)


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest, kernel: Kernel, guest_image, accel, backend: Backend):
    """A topology up for a module (a Deployment): `two-vm` unless parametrised (indirect) by name or path."""
    yield from _deployment_up(request, kernel, guest_image, accel, backend)


@pytest.fixture(scope="module")
def topology(request: pytest.FixtureRequest, kernel: Kernel, guest_image, accel, backend: Backend):
    """The old name of `deployment` (it yields a Deployment); kept for one release. Boots its own: use one."""
    warnings.warn("the `topology` fixture is now `deployment` (it yields a Deployment); "
                  "`topology` goes in the next release", DeprecationWarning, stacklevel=2)
    yield from _deployment_up(request, kernel, guest_image, accel, backend)


def _deployment_up(request: pytest.FixtureRequest, kernel: Kernel, guest_image, accel, backend: Backend):
    """Boot the requested topology for the module, yield its Deployment, take it down (or keep it)."""
    state = _state(request.config)
    name = getattr(request, "param", None) or "two-vm"
    topo = _testbed_call(f"topology {name}", topology_mod.load, name)
    deployment = Deployment(topo, kernel, guest_image, accel, backend=backend)
    with _visible(request):
        _testbed_call(f"topology {name}", deployment.__enter__)
        print(f"\nprism-testbed: topology {name} ready in {deployment.timings.ready:.1f}s "
              f"(boots {', '.join(f'{k} {v:.1f}s' for k, v in deployment.timings.boot.items())})", file=sys.stderr)
    for vm in deployment.machines.values():
        state.machines[vm] = 0
    state.record.setdefault("topologies", []).append(
        {"name": name, "module": request.node.nodeid, "kernel": kernel.variant, "run_id": deployment.run_id,
         "backend": backend.describe(),
         "ready_seconds": round(deployment.timings.ready, 2), "boot_seconds": deployment.timings.boot,
         "overlay_seconds": deployment.timings.overlay})
    yield deployment
    keep = request.config.getoption("keep") and request.session.testsfailed > 0
    leftovers = {vm: _new_splats(state, vm) for vm in deployment.machines.values()}
    for vm in deployment.machines.values():
        state.machines.pop(vm, None)
        _save_console(state, request.node.nodeid, vm)
    if keep:
        (runtime_dir(deployment.run_id) / KEEP_MARKER).touch()
        print(f"\nprism-testbed --keep:\n{deployment.describe()}", file=sys.stderr)
    else:
        deployment.down()
    state.write_record()
    for vm, splats in leftovers.items():
        if splats:
            pytest.fail(_splat_message(vm, splats), pytrace=False)


def machine_spec_from_marker(request: pytest.FixtureRequest, kernel: Kernel, image_root: Path,
                             choice: accel_mod.AccelChoice, tap: str | None, name: str,
                             netns: str | None = None) -> tuple[MachineSpec, float]:
    """The VM a test asks for with @pytest.mark.machine(...), validated."""
    marker = request.node.get_closest_marker("machine")
    options = dict(marker.kwargs) if marker else {}
    unknown = sorted(set(options) - MACHINE_MARK_KEYS)
    if unknown:
        pytest.fail(f"@pytest.mark.machine: unknown option {unknown[0]!r} "
                    f"(known: {', '.join(sorted(MACHINE_MARK_KEYS))})", pytrace=False)
    try:
        append = kernel_args(options.get("append", ()), "@pytest.mark.machine(append=…)")
    except ConfigError as exc:
        pytest.fail(str(exc), pytrace=False)
    queues = int(options.get("queues", 2))
    nics = (NicSpec(tap=tap, mac="52:54:00:12:34:01", queues=queues, speed_mbps=int(options.get("speed", 100_000)),
                    vhost=choice.vhost),) if tap else ()
    spec = MachineSpec(name=name, kernel=kernel.bzimage, image=image_root, vcpus=int(options.get("vcpus", 2)),
                       memory_mib=int(options.get("memory", 512)), accel=choice.accel, nics=nics,
                       netns=netns, append=append)
    return spec, float(options.get("boot_timeout", 90))


def _vm_name(nodeid: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", nodeid.rsplit("::", 1)[-1].lower()).strip("-")[:20] or "vm"


@pytest.fixture
def machine(request: pytest.FixtureRequest, kernel: Kernel, guest_image, accel, fabric, backend: Backend):
    """A booted VM with one multiqueue NIC, torn down after the test."""
    state = _state(request.config)
    marker = request.node.get_closest_marker("machine")
    queues = int(marker.kwargs.get("queues", 2)) if marker else 2
    tap = _testbed_call("host fabric", backend.add_tap, fabric, queues)
    name = "vm"
    spec, boot_timeout = _testbed_call("@pytest.mark.machine", machine_spec_from_marker, request, kernel,
                                       guest_image.root, accel, tap, name, backend.netns(fabric))
    run_dir = runtime_dir(state.run_id) / _vm_name(request.node.nodeid)
    vm = backend.machine(spec, run_dir, boot_timeout, fabric, state.run_id)
    state.machines[vm] = 0
    try:
        _testbed_call(f"machine {name}", vm.__enter__)
        state.record["boots"].append({"test": request.node.nodeid, "kernel": kernel.variant,
                                      "accel": accel.accel, "vhost": accel.vhost, "backend": backend.describe(),
                                      "boot_seconds": round(vm.boot_seconds or 0, 3), "qemu_crashes": vm.crashes})
        for crash in vm.crashes:
            print(f"\nprism-testbed: {vm.name}: {crash}; booted again", file=sys.stderr)
        yield vm
    finally:
        failed = any(getattr(request.node, f"rep_{when}", None) is not None
                     and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
        keep = failed and request.config.getoption("keep")
        leftover = _new_splats(state, vm)
        if keep and vm.is_running():
            request.session._prism_keep = True
            print(f"\nprism-testbed --keep: {vm.how_to_reach()}; fabric netns {fabric.netns}", file=sys.stderr)
        else:
            vm.shutdown()
            fabric.remove_tap(tap)
        state.machines.pop(vm, None)
        _save_console(state, request.node.nodeid, vm)
        state.write_record()
        if leftover:
            pytest.fail(_splat_message(vm, leftover), pytrace=False)


def _save_console(state: _State, nodeid: str, vm: Machine) -> None:
    target = state.results / "consoles" / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)
    target.mkdir(parents=True, exist_ok=True)
    for src in (vm.files.console, vm.files.qemu_log):
        if src.exists():
            shutil.copy2(src, target / f"{vm.name}-{src.name}")


def _new_splats(state: _State, vm: Machine) -> list[Splat]:
    seen = state.machines.get(vm, 0)
    splats = vm.splats()
    if len(splats) > seen:
        time.sleep(0.3)  # let the rest of a trace reach the log
        splats = vm.splats()
    state.machines[vm] = len(splats)
    return splats[seen:]


def _splat_message(vm: Machine, splats: list[Splat]) -> str:
    first = splats[0]
    title = first.title if first.kind.lower() in first.title.lower() else f"{first.kind}: {first.title}"
    parts = [f"kernel splat in {vm.name}'s console ({len(splats)}): {title}"]
    for s in splats[:3]:
        parts.append(f"--- {s.kind} at console line {s.lineno} ---\n{s.text()}")
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail the test that was running when a guest console showed a splat."""
    state = _state(item.config)
    try:
        result = yield
    except BaseException as exc:
        _raise_on_splats(state, f"\n(the test also failed: {type(exc).__name__}: {str(exc)[:500]})")
        raise
    _raise_on_splats(state, "")
    return result


def _raise_on_splats(state: _State, suffix: str) -> None:
    for vm in list(state.machines):
        new = _new_splats(state, vm)
        if new:
            pytest.fail(_splat_message(vm, new) + suffix, pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Keep each phase's report on the item, so fixtures know if a test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not (state.record["kernels"] or state.record["boots"]):
        return
    tr = terminalreporter
    tr.section("prism-testbed")
    for selector, k in state.record["kernels"].items():
        tr.write_line(f"kernel {selector}: {k['release']} ({'cache hit, no build' if k['cache_hit'] else 'built'})")
    if state.record["image"]:
        tr.write_line(f"image: {state.record['image']['key']} "
                      f"({'cache hit' if state.record['image']['cache_hit'] else 'built'})")
    for variant, choice in state.record["accel"].items():
        tr.write_line(f"accel for {variant}: {choice['accel']}, vhost {'on' if choice['vhost'] else 'off'} "
                      f"({choice['reason']})")
    if "backend" in state.record:
        tr.write_line(f"backend: {state.record['backend']}")
    boots = sorted(b["boot_seconds"] for b in state.record["boots"])
    if boots:
        tr.write_line(f"boots: {len(boots)}, launch to first guest command median {boots[len(boots) // 2]:.2f}s")
    tr.write_line(f"record: {state.results / 'session.json'}")
