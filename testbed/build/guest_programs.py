"""The guest's own C programs (images/src/*.c), compiled inside the guest root by the guest's gcc and libc.

Why not the host's gcc: a program binds to the symbol versions of the glibc it
is linked against, and a host newer than the guest (glibc >= 2.38 turns
sscanf/strtol into `__isoc23_*@GLIBC_2.38`) makes binaries that bookworm's
glibc 2.36 refuses to load. So mmdebstrap installs the compiler into the new
root in a customize hook, the programs are compiled there (chroot), and the
compiler is purged again before mmdebstrap's own cleanup: the image ships the
programs, not the toolchain. One mmdebstrap run means one apt snapshot, so the
libc the programs are linked against is the very one the guest runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from ..core.cache import sha256_bytes, sha256_file

TOOLCHAIN = ("gcc", "libc6-dev")  # installed for the compile only, purged before the tree is cached
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
INSTALL_DIR = "/usr/local/bin"  # where the programs go in the guest, named after their source (stem)

# A customize hook (run by sh, $1 the root). The purge must leave exactly the
# package set (names and versions) the guest had before the toolchain came:
# anything else is an error, not an image that quietly differs.
HOOK = r"""
set -eu
root=$1; shift
apt() { APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get --yes -oDPkg::Chroot-Directory="$root" "$@"; }
installed() { chroot "$root" dpkg-query -W -f '${Package}\t${Version}\n' | LC_ALL=C sort; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
installed > "$work/guest"
apt install $toolchain
installed > "$work/with-toolchain"
if [ -n "$(LC_ALL=C comm -23 "$work/guest" "$work/with-toolchain")" ]; then
	echo "guest programs: installing $toolchain changed the guest's own packages:" >&2
	LC_ALL=C comm -23 "$work/guest" "$work/with-toolchain" >&2
	exit 1
fi
mkdir -p "$root/tmp/prism-src" "$root$install_dir"
for source; do
	name=$(basename "$source" .c)
	cp "$source" "$root/tmp/prism-src/$name.c"
	chroot "$root" gcc $cflags -o "$install_dir/$name" "/tmp/prism-src/$name.c"
done
rm -rf "$root/tmp/prism-src"
apt purge $(LC_ALL=C comm -13 "$work/guest" "$work/with-toolchain" | cut -f1)
installed > "$work/after"
if ! cmp -s "$work/guest" "$work/after"; then
	echo "guest programs: purging $toolchain did not restore the guest's package set:" >&2
	diff "$work/guest" "$work/after" >&2 || true
	exit 1
fi
"""


def hook_command(programs: Sequence[Path]) -> str:
    """The customize hook that builds programs: the settings and the sources' paths, then HOOK."""
    settings = (f"toolchain={shlex.quote(' '.join(TOOLCHAIN))}; cflags={shlex.quote(' '.join(CFLAGS))}; "
                f"install_dir={shlex.quote(INSTALL_DIR)}")
    sources = " ".join(shlex.quote(str(p.resolve())) for p in programs)
    return f'set -- "$1" {sources}\n{settings}\n{HOOK}'


def mmdebstrap_options(programs: Sequence[Path]) -> list[str]:
    """What mmdebstrap needs to build programs into the root it makes (nothing when there are none)."""
    return [f"--customize-hook={hook_command(programs)}"] if programs else []


def key_material(programs: Sequence[Path]) -> dict:
    """Everything about the programs that changes the binaries: their sources and how they are built.

    Not the sources' paths: an installed testbed and a checkout with the same
    files share one tree.
    """
    if not programs:
        return {}
    return {
        "sources": [[p.name, sha256_file(p)] for p in programs],
        "toolchain": list(TOOLCHAIN), "cflags": list(CFLAGS), "install_dir": INSTALL_DIR,
        "hook": sha256_bytes(HOOK.encode()),
    }


def installed_paths(root: Path, programs: Sequence[Path]) -> dict[str, Path]:
    """Where each program's binary is under root, by program name."""
    return {p.stem: root / INSTALL_DIR.lstrip("/") / p.stem for p in programs}
