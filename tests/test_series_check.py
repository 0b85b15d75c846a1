"""The per-patch series check's pieces: which directories a patch makes it build, what checkpatch said."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.build import series_check
from testbed.build.kernel_spec import Variant
from testbed.core.errors import KernelBuildError, StepTimeout
from testbed.core.progress import CommandFailed

PATCH = """\
diff --git a/net/core/dev.c b/net/core/dev.c
--- a/net/core/dev.c
+++ b/net/core/dev.c
@@ -1 +1 @@
-a
+b
diff --git a/include/net/prism.h b/include/net/prism.h
--- a/include/net/prism.h
+++ b/include/net/prism.h
@@ -1 +1 @@
-a
+b
diff --git a/net/core/prism_test.c b/net/core/prism_test.c
new file mode 100644
--- /dev/null
+++ b/net/core/prism_test.c
@@ -0,0 +1 @@
+b
diff --git a/drivers/net/virtio_net.c b/drivers/net/virtio_net.c
--- a/drivers/net/virtio_net.c
+++ b/drivers/net/virtio_net.c
@@ -1 +1 @@
-a
+b
"""


def test_a_patch_builds_the_directories_of_the_c_files_it_touches(tmp_path):
    patch = tmp_path / "0001-x.patch"
    patch.write_text(PATCH)
    assert series_check.touched_dirs(patch) == ["net/core/", "drivers/net/"]


def test_a_header_only_patch_names_no_directory(tmp_path):
    patch = tmp_path / "0001-h.patch"
    patch.write_text(PATCH.split("diff --git a/net/core/prism_test.c")[0].split("diff --git a/include")[1])
    assert series_check.touched_dirs(patch) == []


def fake_checkpatch(tmp_path: Path, output: str) -> Path:
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    script = tree / "scripts/checkpatch.pl"
    script.write_text(f"#!/bin/sh\ncat <<'OUT'\n{output}OUT\nexit 1\n")
    script.chmod(0o755)
    return tree


def test_checkpatch_findings_carry_their_location(tmp_path):
    tree = fake_checkpatch(tmp_path, "WARNING: line length of 101 exceeds 100 columns\n#12: FILE: net/core/dev.c:5:\n"
                                     "+\tfoo();\n\nERROR: Missing Signed-off-by: line(s)\n\n"
                                     "total: 1 errors, 1 warnings, 40 lines checked\n")
    found = series_check.checkpatch(tree, tmp_path / "p.patch")
    assert found == ("WARNING: line length of 101 exceeds 100 columns (#12: FILE: net/core/dev.c:5:)",
                     "ERROR: Missing Signed-off-by: line(s)")


def test_a_clean_patch_has_no_findings(tmp_path):
    assert series_check.checkpatch(fake_checkpatch(tmp_path, ""), tmp_path / "p.patch") == ()


def test_a_build_failure_is_named_by_the_compilers_first_error(tmp_path):
    failure = CommandFailed(["make"], 2, tmp_path / "log", [
        "  CC      net/core/dev.o",
        "net/core/dev.c:4525:9: error: implicit declaration of function 'prism_backlog_schedule_head'",
        "make[3]: *** [scripts/Makefile.build:250: net/core/dev.o] Error 1"])
    assert series_check.first_error(failure).startswith("net/core/dev.c:4525:9: error: implicit declaration")


def test_a_build_that_overran_its_deadline_says_so_rather_than_a_stale_line(tmp_path):
    failure = StepTimeout(["make"], -9, tmp_path / "log", ["  CC      net/core/dev.o"], 14400)
    assert series_check.first_error(failure) == f"make did not finish in 14400s and was killed; log: {tmp_path / 'log'}"


def test_a_patch_is_ok_only_without_findings_and_broken_builds():
    assert series_check.PatchCheck("0001", (), ()).ok
    assert not series_check.PatchCheck("0001", ("WARNING: x",), ()).ok
    assert not series_check.PatchCheck("0001", (), (("uniprocessor", "error: y"),)).ok


def test_a_variant_without_a_series_is_refused(tmp_path):
    variant = Variant(name="vanilla", base="tinyconfig", fragments=(), patches_dir=None, localversion="-vanilla")
    with pytest.raises(KernelBuildError, match="variant vanilla has no patch series to check"):
        series_check.check_series(variant, source=None)
