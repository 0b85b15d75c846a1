"""PRISM settings as the command line and the cases give them."""

from __future__ import annotations

import pytest

from testbed.traffic import mix as mix_mod
from testbed.traffic.prism_knobs import PrismSetting, parse_setting


def test_settings_parse_with_their_extras():
    assert parse_setting("sync") == PrismSetting("sync")
    assert parse_setting("pseudo-sync+split") == PrismSetting("pseudo-sync", split=True)
    assert parse_setting("pseudo-sync+empty").label == "prism-pseudo-sync+empty"
    assert parse_setting("sync+split+empty") == PrismSetting("sync", split=True, empty=True)


@pytest.mark.parametrize("text", ["bogus", "sync+bogus", "sync+split+split", "off+split", "off+empty", "",
                                  "sync+no-bogus", "off+no-cell", "sync+no-cell+no-cell"])
def test_bad_settings_are_one_clear_error(text):
    with pytest.raises(ValueError) as info:
        parse_setting(text)
    assert repr(text) in str(info.value) or "bogus" in str(info.value) or "''" in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_lists_nothing_but_turns_the_mode_on():
    mix = mix_mod.load("overlay-flood")
    assert mix.priority_ports, "the shipped mix lists priority ports"
    listed = PrismSetting("pseudo-sync").sysctls(mix)
    empty = PrismSetting("pseudo-sync", empty=True).sysctls(mix)
    assert listed["net.core.prism_ports"] and empty["net.core.prism_ports"] == ""
    assert empty["net.core.prism_dscp"] == "" and empty["net.core.prism_mode"] == "1"


def test_a_feature_can_be_turned_off_alone_and_the_mode_is_written_last():
    mix = mix_mod.load("overlay-flood")
    assert PrismSetting("sync").sysctls(mix)["net.core.prism_features"] == "15"
    setting = parse_setting("pseudo-sync+no-local+no-cell")
    assert setting.without == ("cell", "local") and setting.features == 15 & ~4 & ~8
    assert setting.text == "pseudo-sync+no-cell+no-local" and parse_setting(setting.text) == setting
    assert list(setting.sysctls(mix))[-1] == "net.core.prism_mode"
    assert setting.sysctls(mix)["net.core.prism_features"] == "3"
    with pytest.raises(ValueError, match="no feature 'tcp'"):
        PrismSetting("sync", without=("tcp",))
