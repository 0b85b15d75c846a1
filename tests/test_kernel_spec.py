"""kernel-config/ as data: validation, and what the cache key depends on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from testbed.build import kernel_spec
from testbed.build.kernel_spec import BuildSpec, load_catalog, resolve
from testbed.core.errors import ConfigError


def make_config_dir(tmp_path: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    (tmp_path / "kernel.toml").write_text(textwrap.dedent(toml))
    for name, text in (files or {"base.config": "CONFIG_NET=y\n"}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


GOOD = """
    default-source = "local"
    [sources.local]
    tarball = "linux.tar.xz"
    [variants.vanilla]
    base = "tinyconfig"
    fragments = ["base.config"]
    [variants.prism]
    base = "tinyconfig"
    fragments = ["base.config"]
    patches = "patches/prism"
    localversion = "-prism"
"""


def test_repository_catalog_loads():
    catalog = load_catalog()
    assert {"vanilla", "prism"} <= set(catalog.variants)
    assert catalog.variant("prism").patches_dir is not None
    assert catalog.variant("vanilla").localversion == "-vanilla"
    assert catalog.default_source in catalog.sources


def test_catalog_defaults_localversion_to_variant_name(tmp_path):
    d = make_config_dir(tmp_path, GOOD, {"base.config": "", "patches/prism/series": ""})
    assert load_catalog(d).variant("vanilla").localversion == "-vanilla"


@pytest.mark.parametrize("toml, message", [
    ('default-source = "x"\n[sources.x]\ntarball = "t"\n[variants.v]\nbase = "tinyconfig"\nfragments = []\nfoo = 1',
     "unknown key 'foo'"),
    ('default-source = "x"\n[sources.x]\ntarball = "t"\n[variants.v]\nbase = "allyesconfig"\nfragments = []',
     "base 'allyesconfig' must be one of"),
    ('default-source = "x"\n[sources.x]\ntarball = "t"\n[variants.v]\nbase = "tinyconfig"\nfragments = ["nope.config"]',
     "fragment nope.config does not exist"),
    ('default-source = "x"\n[sources.x]\nurl = "https://example.invalid/l.tar.xz"\n[variants]',
     "a url needs 'sha256' pinned"),
    ('default-source = "x"\n[sources.x]\ntarball = "t"\nurl = "u"\n[variants]', "exactly one of 'tarball' or 'url'"),
    ('default-source = "y"\n[sources.x]\ntarball = "t"\n[variants]', "default-source 'y' is not one of"),
    ('default-source = "x"\n[sources.x]\ntarball = "t"\n[variants.v]\nbase = "tinyconfig"\nfragments = "base.config"',
     "'fragments' must be list"),
    ("this is not toml", "not valid TOML"),
])
def test_catalog_errors_name_the_file_and_key(tmp_path, toml, message):
    d = make_config_dir(tmp_path, toml)
    with pytest.raises(ConfigError, match=message) as info:
        load_catalog(d)
    assert str(d / "kernel.toml") in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_variant_and_source_list_the_known_ones(tmp_path):
    catalog = load_catalog(make_config_dir(tmp_path, GOOD, {"base.config": "", "patches/prism/series": ""}))
    with pytest.raises(ConfigError, match=r"kernel variant 'nope': unknown \(known: prism, vanilla\)"):
        catalog.variant("nope")
    with pytest.raises(ConfigError, match=r"kernel source 'nope': unknown \(known: local\)"):
        catalog.source("nope")


def test_series_lists_patches_in_order_and_checks_they_exist(tmp_path):
    d = make_config_dir(tmp_path, GOOD, {
        "base.config": "",
        "patches/prism/series": "# comment\n0002-b.patch\n\n0001-a.patch  # trailing comment\n",
        "patches/prism/0001-a.patch": "a", "patches/prism/0002-b.patch": "b",
    })
    patches = load_catalog(d).variant("prism").patches()
    assert [p.name for p in patches] == ["0002-b.patch", "0001-a.patch"]
    (d / "patches/prism/series").write_text("0003-missing.patch\n")
    with pytest.raises(ConfigError, match=r"series:1: patch 0003-missing.patch does not exist"):
        load_catalog(d).variant("prism").patches()


def test_missing_tarball_names_the_package(tmp_path):
    source = kernel_spec.KernelSource("debian", tarball=tmp_path / "none.tar.xz", package="linux-source-6.1")
    with pytest.raises(ConfigError, match=r"does not exist \(install the Debian package linux-source-6.1\)"):
        source.identity()


def _spec(**changes) -> BuildSpec:
    variant = kernel_spec.Variant("prism", "tinyconfig", (Path("base.config"),), None, "-prism")
    fields = dict(variant=variant, source=kernel_spec.KernelSource("s", tarball=Path("t")), source_sha256="a" * 64,
                  patches=(("0001.patch", "1" * 64), ("0002.patch", "2" * 64)),
                  fragments=(("base.config", "f" * 64),), toolchain="gcc 12 | ld 2.40")
    fields.update(changes)
    return BuildSpec(**fields)


def test_cache_key_is_stable_and_names_the_variant():
    assert _spec().key == _spec().key
    assert _spec().key.startswith("prism-")


@pytest.mark.parametrize("change", [
    {"source_sha256": "b" * 64},
    {"patches": (("0001.patch", "1" * 64), ("0002.patch", "3" * 64))},   # a patch's content
    {"patches": (("0002.patch", "2" * 64), ("0001.patch", "1" * 64))},   # the series order
    {"fragments": (("base.config", "e" * 64),)},
    {"toolchain": "gcc 13 | ld 2.41"},
])
def test_cache_key_changes_with_every_input(change):
    assert _spec(**change).key != _spec().key


def test_cache_key_ignores_where_the_source_lives():
    moved = kernel_spec.KernelSource("other-name", tarball=Path("/elsewhere/t"))
    assert _spec(source=moved).key == _spec().key


def test_a_malformed_fragment_line_is_named_before_anything_is_built(tmp_path, monkeypatch):
    """resolve() is the first step of every build: the bad line stops it there, not after configure."""
    d = make_config_dir(tmp_path, GOOD, {"base.config": "CONFIG_VXLAN=y\nCONFG_OOPS y\n", "patches/prism/series": "",
                                         "linux.tar.xz": "x"})
    catalog = load_catalog(d)
    with pytest.raises(ConfigError, match=r"base.config:2: not a Kconfig assignment") as info:
        resolve(catalog, "vanilla")
    assert "\n" not in str(info.value)
