"""build_variant: a hit costs no build, a damaged entry is rebuilt, two
callers at once build once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from testbed.build import kernel as kernel_mod
from testbed.build import kernel_spec
from testbed.core.cache import Store


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return Store("kernels")


@pytest.fixture
def spec() -> kernel_spec.BuildSpec:
    variant = kernel_spec.Variant("vanilla", "tinyconfig", (Path("base.config"),), None, "-vanilla")
    return kernel_spec.BuildSpec(variant, kernel_spec.KernelSource("s", tarball=Path("t")), "a" * 64, (),
                                 (("base.config", "b" * 64),), "gcc")


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """Replace the real build with one that publishes a small fake entry."""
    calls: list[str] = []
    gate = threading.Lock()

    def fake_build(spec, store):
        with gate:
            calls.append(spec.key)
        with store.staging(spec.key) as stage:
            (stage / "bzImage").write_bytes(b"kernel image " * 1000)
            (stage / "metadata.json").write_text(json.dumps({"release": "6.1.0-vanilla"}))

    monkeypatch.setattr(kernel_mod, "_build_into_store", fake_build)
    return calls


def test_second_lookup_is_a_cache_hit_without_a_build(store, spec, builds):
    first = kernel_mod.build_variant(spec, store)
    second = kernel_mod.build_variant(spec, store)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert builds == [spec.key]
    assert second.release == "6.1.0-vanilla"


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:100]),  # truncated
    lambda p: p.write_bytes(b"X" + p.read_bytes()[1:]),  # tampered
    lambda p: p.unlink(),  # gone
])
def test_damaged_bzimage_is_rebuilt_not_booted(store, spec, builds, damage):
    kernel = kernel_mod.build_variant(spec, store)
    damage(kernel.bzimage)
    again = kernel_mod.build_variant(spec, store)
    assert again.cache_hit is False
    assert builds == [spec.key, spec.key]
    assert again.bzimage.read_bytes() == b"kernel image " * 1000


def test_two_callers_at_once_build_once(store, spec, builds):
    results = []
    threads = [threading.Thread(target=lambda: results.append(kernel_mod.build_variant(spec, store)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [spec.key]
    assert sorted(r.cache_hit for r in results) == [False, True, True, True]


def test_bzimage_release_reads_the_setup_header(tmp_path):
    image = bytearray(0x4000)
    image[0x202:0x206] = b"HdrS"
    image[0x20E:0x210] = (0x1000 - 0x200).to_bytes(2, "little")
    version = b"6.1.192-prism (root@host) #1 SMP\0"
    image[0x1000:0x1000 + len(version)] = version
    path = tmp_path / "bzImage"
    path.write_bytes(bytes(image))
    assert kernel_mod.bzimage_release(path) == "6.1.192-prism"


def test_a_file_that_is_not_a_bzimage_is_a_clear_error(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(b"\x7fELF" + bytes(0x300))
    with pytest.raises(kernel_mod.ConfigError, match=r"vmlinux: not an x86 bzImage"):
        kernel_mod.bzimage_release(path)


def test_unknown_kernel_selector_is_a_one_line_error():
    with pytest.raises(kernel_mod.ConfigError,
                       match=r"--kernel nope: not a variant \(prism, prism-debug, vanilla\) nor a bzImage"):
        kernel_mod.obtain("nope")
    with pytest.raises(kernel_mod.ConfigError, match=r"--kernel /nonexistent/bzImage: no such file"):
        kernel_mod.obtain("/nonexistent/bzImage")
