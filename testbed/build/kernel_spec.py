"""What a kernel is made of, read from kernel-config/ (data, not code).

`kernel-config/kernel.toml` names the sources and the variants; a variant
is a base config (tinyconfig or defconfig), an ordered list of fragments, an
optional patch series and a localversion. From a resolved spec we derive the
cache key: everything that can change the bzImage, and nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core import tomlconf
from ..core.cache import sha256_bytes, sha256_file, sha256_file_memo
from ..core.cmd import run
from ..core.errors import CommandError, ConfigError
from ..core.paths import REPO_ROOT
from . import deadlines, kconfig

# Bump when the build procedure changes in a way that changes its output.
BUILDER_VERSION = 2  # 2: localversion through make, not .config

KERNEL_CONFIG_DIR = REPO_ROOT / "kernel-config"
BASE_CONFIGS = ("tinyconfig", "defconfig")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KernelSource:
    """Where a kernel tree comes from: a local tarball or a pinned URL."""

    name: str
    tarball: Path | None = None
    url: str | None = None
    sha256: str | None = None
    package: str | None = None

    def identity(self) -> str:
        """The sha256 of the source tarball (memoised for local files)."""
        if self.tarball is not None:
            if not self.tarball.is_file():
                hint = f" (install the Debian package {self.package})" if self.package else ""
                raise ConfigError(f"kernel source {self.name}: {self.tarball} does not exist{hint}")
            return sha256_file_memo(self.tarball)
        assert self.sha256 is not None
        return self.sha256


@dataclass(frozen=True)
class Variant:
    name: str
    base: str
    fragments: tuple[Path, ...]
    patches_dir: Path | None
    localversion: str

    def patches(self) -> list[Path]:
        """The patch files in series order (empty when there is no series)."""
        if self.patches_dir is None:
            return []
        series = self.patches_dir / "series"
        if not series.is_file():
            raise ConfigError(f"variant {self.name}: {series} is missing")
        patches = []
        for lineno, raw in enumerate(series.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            patch = self.patches_dir / line
            if not patch.is_file():
                raise ConfigError(f"{series}:{lineno}: patch {line} does not exist")
            patches.append(patch)
        return patches

    def localversion_fragment(self) -> str:
        """No scm suffix, no config suffix: the release is VERSION + make's LOCALVERSION."""
        return 'CONFIG_LOCALVERSION=""\n# CONFIG_LOCALVERSION_AUTO is not set\n'


@dataclass(frozen=True)
class KernelCatalog:
    """Everything in kernel.toml: the sources and the variants."""

    default_source: str
    sources: dict[str, KernelSource]
    variants: dict[str, Variant]

    def source(self, name: str | None) -> KernelSource:
        name = name or self.default_source
        if name not in self.sources:
            raise ConfigError(f"kernel source {name!r}: unknown (known: {', '.join(sorted(self.sources))})")
        return self.sources[name]

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ConfigError(f"kernel variant {name!r}: unknown (known: {', '.join(sorted(self.variants))})")
        return self.variants[name]


def load_catalog(config_dir: Path = KERNEL_CONFIG_DIR) -> KernelCatalog:
    path = config_dir / "kernel.toml"
    data = tomlconf.read(path, "kernel catalog")
    tomlconf.check_keys(data, {"default-source", "sources", "variants"}, str(path))

    sources = {}
    for name, table in tomlconf.typed(data, "sources", dict, str(path)).items():
        origin = f"{path} [sources.{name}]"
        tomlconf.check_keys(table, {"tarball", "url", "sha256", "package"}, origin)
        tarball = tomlconf.typed(table, "tarball", str, origin, None)
        url = tomlconf.typed(table, "url", str, origin, None)
        sha = tomlconf.typed(table, "sha256", str, origin, None)
        if (tarball is None) == (url is None):
            raise ConfigError(f"{origin}: give exactly one of 'tarball' or 'url'")
        if url is not None and (sha is None or not _SHA256.match(sha)):
            raise ConfigError(f"{origin}: a url needs 'sha256' pinned to 64 lowercase hex digits")
        sources[name] = KernelSource(
            name=name,
            tarball=(config_dir / tarball) if tarball else None,
            url=url, sha256=sha,
            package=tomlconf.typed(table, "package", str, origin, None),
        )

    variants = {}
    for name, table in tomlconf.typed(data, "variants", dict, str(path)).items():
        origin = f"{path} [variants.{name}]"
        tomlconf.check_keys(table, {"base", "fragments", "patches", "localversion"}, origin)
        base = tomlconf.typed(table, "base", str, origin)
        if base not in BASE_CONFIGS:
            raise ConfigError(f"{origin}: base {base!r} must be one of {', '.join(BASE_CONFIGS)}")
        fragments = []
        for frag in tomlconf.typed(table, "fragments", list, origin):
            frag_path = config_dir / str(frag)
            if not frag_path.is_file():
                raise ConfigError(f"{origin}: fragment {frag} does not exist")
            fragments.append(frag_path)
        patches = tomlconf.typed(table, "patches", str, origin, None)
        localversion = tomlconf.typed(table, "localversion", str, origin, None) or f"-{name}"
        if not re.fullmatch(r"-[A-Za-z0-9._-]+", localversion):
            raise ConfigError(f"{origin}: localversion {localversion!r} must look like '-name'")
        variants[name] = Variant(name, base, tuple(fragments), (config_dir / patches) if patches else None, localversion)

    default = tomlconf.typed(data, "default-source", str, str(path))
    if default not in sources:
        raise ConfigError(f"{path}: default-source {default!r} is not one of the [sources]")
    return KernelCatalog(default, sources, variants)


def toolchain_identity() -> str:
    """Compiler and linker versions: a new toolchain is a new kernel."""
    lines = []
    for tool in (["gcc", "--version"], ["ld", "--version"]):
        try:
            out = run(tool, timeout=deadlines.TOOL_VERSION, check=True).stdout
        except CommandError as exc:
            raise ConfigError(f"toolchain: cannot run {tool[0]}: {exc}") from None
        lines.append(out.splitlines()[0].strip())
    return " | ".join(lines)


@dataclass(frozen=True)
class BuildSpec:
    """A fully resolved kernel to build: the cache key is derived from it."""

    variant: Variant
    source: KernelSource
    source_sha256: str
    patches: tuple[tuple[str, str], ...]  # (file name, sha256) in series order
    fragments: tuple[tuple[str, str], ...]  # (file name, sha256) in merge order
    toolchain: str
    arch: str = "x86_64"
    extra: dict = field(default_factory=dict)

    def key_material(self) -> dict:
        return {
            "builder": BUILDER_VERSION,
            "arch": self.arch,
            "source": self.source_sha256,
            "patches": [list(p) for p in self.patches],
            "base": self.variant.base,
            "fragments": [list(f) for f in self.fragments],
            "localversion": self.variant.localversion,
            "toolchain": self.toolchain,
        }

    @property
    def key(self) -> str:
        material = json.dumps(self.key_material(), sort_keys=True).encode()
        return f"{self.variant.name}-{sha256_bytes(material)[:24]}"


def resolve(catalog: KernelCatalog, variant_name: str, source_name: str | None = None) -> BuildSpec:
    variant = catalog.variant(variant_name)
    for fragment in variant.fragments:  # a malformed line is named now, not after a source unpack and configure
        kconfig.parse_config_file(fragment)
    source = catalog.source(source_name)
    return BuildSpec(
        variant=variant,
        source=source,
        source_sha256=source.identity(),
        patches=tuple((p.name, sha256_file(p)) for p in variant.patches()),
        fragments=tuple((f.name, sha256_file(f)) for f in variant.fragments),
        toolchain=toolchain_identity(),
    )
