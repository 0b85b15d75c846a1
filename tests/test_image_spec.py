"""images/ as data: validation, and what the image cache key depends on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testbed.build import guest_programs
from testbed.build.image import IMAGES_DIR, load_spec, mmdebstrap_argv
from testbed.core.errors import ConfigError


@pytest.fixture
def images(tmp_path) -> Path:
    shutil.copytree(IMAGES_DIR, tmp_path / "images")
    return tmp_path / "images"


def test_repository_image_lists_what_the_testbed_needs():
    spec = load_spec()
    assert {"busybox-static", "iproute2", "ethtool", "sockperf", "iperf3", "crun", "qemu-guest-agent", "procps"} \
        <= set(spec.packages)
    init = spec.rootfs / "usr/lib/prism-testbed/init"
    assert init.is_file() and init.stat().st_mode & 0o111


def test_mmdebstrap_command_trims_docs_and_includes_packages():
    argv = mmdebstrap_argv(load_spec(), Path("/tmp/root"))
    assert argv[:2] == ["mmdebstrap", "--variant=essential"]
    assert any(a.startswith("--include=") and "qemu-guest-agent" in a for a in argv)
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert argv[-2:] == ["bookworm", "/tmp/root"]


def test_key_follows_overlay_files_but_not_unrelated_changes(images):
    spec = load_spec(images_dir=images)
    key, tree_key = spec.key(), spec.tree_key()
    init = images / "rootfs/usr/lib/prism-testbed/init"
    init.write_text(init.read_text() + "\n# changed\n")
    changed = load_spec(images_dir=images).key()
    assert changed != key
    assert load_spec(images_dir=images).tree_key() == tree_key  # the mmdebstrap tree is reused
    init.chmod(0o644)
    assert load_spec(images_dir=images).key() != changed  # the mode counts too


def test_the_programs_are_compiled_in_the_guest_root_by_its_own_toolchain():
    """Not by the host's gcc: a host glibc newer than the guest's makes binaries the guest cannot load."""
    spec = load_spec()
    hooks = [a for a in mmdebstrap_argv(spec, Path("/tmp/root")) if a.startswith("--customize-hook=")]
    assert len(hooks) == 1
    hook = hooks[0]
    assert "toolchain='gcc libc6-dev'" in hook and "apt install $toolchain" in hook
    assert 'chroot "$root" gcc $cflags' in hook and "apt purge" in hook
    assert all(str(p.resolve()) in hook for p in spec.programs()) and len(spec.programs()) == 2


def test_key_follows_the_programs_and_how_they_are_built_not_where_they_are(images, monkeypatch):
    tree, key = load_spec(images_dir=images).tree_key(), load_spec(images_dir=images).key()
    assert (tree, key) == (load_spec().tree_key(), load_spec().key())  # the same files elsewhere: the same image
    source = images / "src/prism-stagemon.c"
    source.write_text(source.read_text() + "\n/* changed */\n")
    assert load_spec(images_dir=images).tree_key() != tree and load_spec(images_dir=images).key() != key
    changed = load_spec(images_dir=images).tree_key()
    monkeypatch.setattr(guest_programs, "CFLAGS", (*guest_programs.CFLAGS, "-g"))
    assert load_spec(images_dir=images).tree_key() != changed


def test_key_follows_the_package_list(images):
    key = load_spec(images_dir=images).tree_key()
    text = (images / "base.toml").read_text().replace('"procps",', '"procps", "tcpdump",')
    (images / "base.toml").write_text(text)
    assert load_spec(images_dir=images).tree_key() != key


@pytest.mark.parametrize("toml, message", [
    ('packages = []', "'packages' must be a non-empty list"),
    ('packages = ["a"]\nsize = 3', "unknown key 'size'"),
    ('packages = ["a"]\nslack-mib = -1', "'slack-mib' must be a non-negative integer"),
    ('packages = [', "not valid TOML"),
])
def test_bad_image_spec_is_a_one_line_error(images, toml, message):
    (images / "base.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message) as info:
        load_spec(images_dir=images)
    assert "base.toml" in str(info.value) and "\n" not in str(info.value)


def test_unknown_image_name(images):
    with pytest.raises(ConfigError, match="image nope: cannot read"):
        load_spec("nope", images_dir=images)
