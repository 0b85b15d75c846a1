"""testbed.build.kconfig: parsing fragments, checking the final .config, explaining drops."""

from __future__ import annotations

import textwrap

import pytest

from testbed.build.kconfig import Mismatch, explain, find_kconfig_entry, parse_config_text, verify
from testbed.core.errors import ConfigError

# --- parse_config_text ------------------------------------------------------


def test_parse_reads_assignments_strings_and_unset_options():
    text = textwrap.dedent("""\
        # Networking for the testbed
        CONFIG_NET=y
        CONFIG_VIRTIO_NET=m

        CONFIG_LOCALVERSION="-prism"
        CONFIG_NR_CPUS=64
        # CONFIG_MODULES is not set
        #   a comment that mentions CONFIG_FOO=y
    """)
    assert parse_config_text(text) == {
        "CONFIG_NET": "y",
        "CONFIG_VIRTIO_NET": "m",
        "CONFIG_LOCALVERSION": '"-prism"',
        "CONFIG_NR_CPUS": "64",
        "CONFIG_MODULES": "n",
    }


def test_parse_later_line_for_same_option_wins():
    assert parse_config_text("CONFIG_X=y\n# CONFIG_X is not set\n") == {"CONFIG_X": "n"}


@pytest.mark.parametrize("junk, lineno", [
    ("CONFIG_NET=y\nCONFIG_NET y\n", 2),
    ("NET=y\n", 1),
    ("CONFIG_NET=y\n\nCONFIG_BPF\n", 3),
])
def test_parse_rejects_junk_naming_origin_and_line(junk, lineno):
    with pytest.raises(ConfigError, match=rf"^net\.config:{lineno}: not a Kconfig assignment"):
        parse_config_text(junk, origin="net.config")


# --- verify ---------------------------------------------------------------


def test_verify_is_empty_when_everything_was_honoured():
    fragments = [("base.config", {"CONFIG_NET": "y", "CONFIG_MODULES": "n"})]
    assert verify(fragments, {"CONFIG_NET": "y"}) == []


def test_verify_reports_dropped_option():
    fragments = [("net.config", {"CONFIG_NET_SCH_PRIO": "y"})]
    assert verify(fragments, {}) == [Mismatch("CONFIG_NET_SCH_PRIO", "y", "n", "net.config")]


def test_verify_reports_changed_option():
    fragments = [("net.config", {"CONFIG_VIRTIO_NET": "y"})]
    assert verify(fragments, {"CONFIG_VIRTIO_NET": "m"}) == [Mismatch("CONFIG_VIRTIO_NET", "y", "m", "net.config")]


def test_verify_reports_option_that_should_be_off_but_is_on():
    fragments = [("base.config", {"CONFIG_MODULES": "n"})]
    assert verify(fragments, {"CONFIG_MODULES": "y"}) == [Mismatch("CONFIG_MODULES", "n", "y", "base.config")]


def test_verify_later_fragment_overrides_earlier_one():
    fragments = [("base.config", {"CONFIG_DEBUG_INFO": "y"}), ("fast.config", {"CONFIG_DEBUG_INFO": "n"})]
    assert verify(fragments, {}) == []


def test_verify_blames_the_fragment_whose_value_was_final():
    fragments = [("base.config", {"CONFIG_KASAN": "n"}), ("debug.config", {"CONFIG_KASAN": "y"})]
    assert verify(fragments, {}) == [Mismatch("CONFIG_KASAN", "y", "n", "debug.config")]


def test_mismatch_describe_names_fragment_option_wanted_and_got():
    text = Mismatch("CONFIG_NET_SCH_PRIO", "y", "n", "kernel-config/net.config").describe()
    assert text == "kernel-config/net.config asks CONFIG_NET_SCH_PRIO=y but the final .config has it unset"


def test_mismatch_describe_shows_a_set_value_as_is():
    assert Mismatch("CONFIG_VIRTIO_NET", "y", "m", "f").describe().endswith("has it m")


# --- explain ----------------------------------------------------------------

NET_KCONFIG = """\
menu "Prism scheduling"
	depends on BAR

if FOO

config HELPER
	bool "a helper"
	help
	  Enables the helper.

	  if something is wrong with WIDGET, say N here.

config TARGET
	tristate "the target"
	depends on BAZ && QUX
	default y
	help
	  The thing the fragment asks for.

endif # FOO

endmenu

config FREE
	bool "no conditions"
"""


@pytest.fixture
def source(tmp_path):
    tree = tmp_path / "linux"
    (tree / "net" / "prism").mkdir(parents=True)
    (tree / "Kconfig").write_text('mainmenu "Linux"\nsource "net/prism/Kconfig"\n')
    (tree / "net" / "prism" / "Kconfig").write_text(NET_KCONFIG)
    return tree


def test_find_kconfig_entry_collects_if_menu_and_own_conditions(source):
    path, conditions = find_kconfig_entry(source, "CONFIG_TARGET")
    assert path == source / "net" / "prism" / "Kconfig"
    assert conditions == ["BAR", "FOO", "BAZ && QUX"]


def test_explain_names_conditions_and_the_symbols_that_are_off(source):
    final = {"CONFIG_FOO": "y", "CONFIG_BAZ": "m"}
    text = explain(source, "CONFIG_TARGET", final)
    assert text == "needs (BAR) && (FOO) && (BAZ && QUX); off in the final .config: CONFIG_BAR, CONFIG_QUX"


def test_explain_ignores_keywords_inside_help_text(source):
    text = explain(source, "CONFIG_TARGET", {})
    assert "something" not in text
    assert "WIDGET" not in text
    assert text.endswith("off in the final .config: CONFIG_BAR, CONFIG_FOO, CONFIG_BAZ, CONFIG_QUX")


def test_explain_lists_nothing_off_when_all_symbols_are_on(source):
    final = {f"CONFIG_{s}": "y" for s in ("BAR", "FOO", "BAZ", "QUX")}
    assert explain(source, "CONFIG_TARGET", final) == "needs (BAR) && (FOO) && (BAZ && QUX)"


def test_explain_option_outside_blocks_has_no_condition(source):
    assert explain(source, "CONFIG_FREE", {}).startswith("net/prism/Kconfig sets no condition on it")


def test_explain_unknown_option_says_nothing_defines_it(source):
    assert explain(source, "CONFIG_NOPE", {}) == "no Kconfig entry defines CONFIG_NOPE in this source tree"
