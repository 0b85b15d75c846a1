"""The guest's programs start on the guest's glibc: the checker, and the programs of the image this checkout builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testbed.build import glibc_abi, guest_programs
from testbed.build.glibc_abi import GlibcVersion
from testbed.build.image import ROOT_FILE, load_spec
from testbed.core.cache import Store
from testbed.core.cmd import run

BOOKWORM = GlibcVersion.parse("2.36-9+deb12u14")

# `readelf -V --wide` of prism-stagemon as an Ubuntu 24.04 host's gcc (glibc 2.39) builds it:
# under _GNU_SOURCE sscanf/strtol become __isoc23_*@GLIBC_2.38, which bookworm lacks.
READELF_FROM_A_GLIBC_2_39_HOST = """
Version symbols section '.gnu.version' contains 20 entries:
 Addr: 0x00000000000006c2  Offset: 0x000006c2  Link: 6 (.dynsym)
  000:   0 (*local*)       2 (GLIBC_2.34)    1 (*global*)      3 (GLIBC_2.17)
  004:   4 (GLIBC_2.2.5)   4 (GLIBC_2.2.5)   5 (GLIBC_2.38)    4 (GLIBC_2.2.5)

Version needs section '.gnu.version_r' contains 1 entry:
 Addr: 0x00000000000006f0  Offset: 0x000006f0  Link: 7 (.dynstr)
  000000: Version: 1  File: libc.so.6  Cnt: 4
  0x0010:   Name: GLIBC_2.38  Flags: none  Version: 5
  0x0020:   Name: GLIBC_2.2.5  Flags: none  Version: 4
  0x0030:   Name: GLIBC_2.17  Flags: none  Version: 3
  0x0040:   Name: GLIBC_2.34  Flags: none  Version: 2
"""


def test_the_checker_refuses_a_program_built_against_glibc_2_38_for_a_2_36_guest():
    needs = glibc_abi.version_needs(READELF_FROM_A_GLIBC_2_39_HOST)
    assert needs == {"GLIBC_2.38", "GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.34"}
    assert glibc_abi.missing_from(needs, BOOKWORM) == ("GLIBC_2.38",)
    stagemon = glibc_abi.Requirement("prism-stagemon", needs, glibc_abi.missing_from(needs, BOOKWORM))
    assert stagemon.newest == "GLIBC_2.38"
    assert glibc_abi.refusal([stagemon], BOOKWORM) == "the guest has glibc 2.36, but prism-stagemon needs GLIBC_2.38"
    assert glibc_abi.missing_from(needs, GlibcVersion.parse("2.38")) == ()


def test_versions_compare_as_numbers_and_private_is_never_provided():
    assert GlibcVersion.parse("GLIBC_2.4") < GlibcVersion.parse("2.36") < GlibcVersion.parse("2.38")
    assert GlibcVersion.parse("GLIBC_2.2.5") < GlibcVersion.parse("2.3")
    assert glibc_abi.missing_from({"GLIBC_2.36", "GLIBC_2.3.4", "GLIBC_PRIVATE"}, BOOKWORM) == ("GLIBC_PRIVATE",)
    with pytest.raises(ValueError):
        GlibcVersion.parse("unknown")


def test_only_the_version_needs_section_counts():
    """A library's own version definitions name versions too; they are not needs."""
    text = READELF_FROM_A_GLIBC_2_39_HOST.replace("GLIBC_2.38", "GLIBC_2.7") + (
        "\nVersion definition section '.gnu.version_d' contains 1 entry:\n"
        "  000000: Rev: 1  Flags: BASE  Index: 1  Cnt: 1  Name: GLIBC_2.99\n")
    assert "GLIBC_2.99" not in glibc_abi.version_needs(text)
    assert glibc_abi.version_needs("\nThere are no version information sections in this file.\n") == frozenset()


def test_the_guest_glibc_is_read_from_its_package_list():
    assert glibc_abi.guest_glibc("iproute2\t6.1.0-3\nlibc6:amd64\t2.36-9+deb12u14\n") == BOOKWORM
    with pytest.raises(ValueError, match="no libc6"):
        glibc_abi.guest_glibc("libc-bin\t2.36-9\n")


@pytest.fixture
def stub_libc(tmp_path) -> Path:
    """A real ELF program that needs GLIBC_2.38, from a stub library that defines that version."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this host")
    (tmp_path / "stub.map").write_text("GLIBC_2.38 { global: stub_isoc23_sscanf; };\n")
    (tmp_path / "stub.c").write_text("int stub_isoc23_sscanf(void) { return 0; }\n")
    (tmp_path / "main.c").write_text("int stub_isoc23_sscanf(void);\nint main(void) { return stub_isoc23_sscanf(); }\n")
    run(["gcc", "-shared", "-fPIC", "-Wl,--version-script=stub.map", "-Wl,-soname,libstub.so", "-o", "libstub.so",
         "stub.c"], cwd=tmp_path, timeout=60, check=True)
    run(["gcc", "-o", "needs-2.38", "main.c", "-L.", "-lstub"], cwd=tmp_path, timeout=60, check=True)
    return tmp_path / "needs-2.38"


def test_the_checker_reads_a_real_binary_and_refuses_it(stub_libc):
    requirement = glibc_abi.requirement(stub_libc, BOOKWORM)
    assert "GLIBC_2.38" in requirement.needs and requirement.missing == ("GLIBC_2.38",)
    assert "needs-2.38 needs GLIBC_2.38" in glibc_abi.refusal([requirement], BOOKWORM)


def dump_from_image(image: Path, inside: str, out: Path) -> Path:
    """One file of an ext4 image, copied out with debugfs (no mount needed)."""
    run(["debugfs", "-R", f"dump -p {inside} {out}", str(image)], timeout=60, check=True)
    if not out.is_file():
        pytest.fail(f"{image} has no {inside}")
    return out


def test_the_programs_in_the_built_image_need_no_newer_glibc_than_the_guest_has(tmp_path):
    """What ships, read from the image: each program of images/src against the image's own libc6."""
    spec = load_spec()
    entry = Store("images").lookup(spec.key())
    if entry is None:
        pytest.skip(f"image {spec.key()} is not built yet (prism-testbed image build; the image build checks this too)")
    guest = glibc_abi.guest_glibc(entry.file("packages.txt").read_text())
    installed = guest_programs.installed_paths(Path("/"), spec.programs())
    assert set(installed) == {"prism-reflector", "prism-stagemon"}
    requirements = [glibc_abi.requirement(dump_from_image(entry.file(ROOT_FILE), str(path), tmp_path / name), guest, name)
                    for name, path in installed.items()]
    assert all(r.needs for r in requirements), "a program with no glibc needs: not read as a dynamic ELF"
    assert glibc_abi.refusal(requirements, guest) is None
