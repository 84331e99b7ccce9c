"""The family registry (dreamops.families) against the families' own code: what the CLI and the
API validate from the registry (names, profiles, capabilities) is what the configs and flows do."""
from __future__ import annotations

import dataclasses

import pytest

from dreamops.families import CAPABILITIES, DEFAULT_FAMILY, FAMILIES, family
from dreamops.tasks.config import resolve_config

CALLABLES = ("config", "train_flow", "data_gate", "summary_lines")


@pytest.fixture(params=sorted(FAMILIES))
def fam(request):
    return FAMILIES[request.param]


def test_the_registry_lists_exactly_the_profiles_the_family_defines(fam):
    assert tuple(fam.load("profile_table")) == fam.profiles
    assert fam.default_profile in fam.profiles
    assert DEFAULT_FAMILY in FAMILIES


def test_every_entry_point_loads_and_every_profile_resolves_to_the_familys_config(fam):
    assert all(callable(fam.load(entry)) for entry in CALLABLES)
    assert fam.canary_test in ("welch", "two_proportion")
    if fam.supports("fleet"):   # the fleet builds the family's robot and validates scenarios and faults by it
        robot = fam.load("robot")
        assert callable(robot) and "day" in robot.SCENARIOS and robot.FAULTS
    for profile in fam.profiles:
        cfg = resolve_config(profile, agent=fam.name)
        assert isinstance(cfg, fam.load("config")) and cfg.agent == fam.name and cfg.profile == profile


def test_unknown_names_are_one_clear_error(fam):
    with pytest.raises(ValueError, match=r"unknown agent 'nope'; choose one of carracing-vmc, pick-vla"):
        family("nope")
    with pytest.raises(ValueError, match=rf"unknown profile 'huge' for {fam.name}; choose one of"):
        resolve_config("huge", agent=fam.name)
    with pytest.raises(KeyError, match="unknown capability"):
        fam.supports("teleport")


def test_a_missing_capability_says_which_families_have_it(monkeypatch):
    """Both families have every capability today; a new one may start without some (its flags off)."""
    third = dataclasses.replace(FAMILIES[DEFAULT_FAMILY], name="third-family", fleet_data=False, drift_eval=False)
    monkeypatch.setitem(FAMILIES, third.name, third)
    able = [g.name for g in FAMILIES.values() if g.supports("fleet_data")]
    assert able == [f for f in FAMILIES if f != "third-family"]
    with pytest.raises(ValueError, match=rf"data_window_hours .* is not available for third-family yet "
                                         rf"\(available for: {', '.join(able)}\)"):
        third.require("fleet_data")


def test_the_default_family_keeps_the_upload_layout_it_had():
    from dreamops.uploads import DEFAULT_UPLOADS

    assert DEFAULT_UPLOADS == DEFAULT_FAMILY   # its uploads stay directly under uploads/<warehouse>/


def test_a_new_family_needs_only_a_registry_line(monkeypatch):
    """What a third family adds: its own modules and one Family(...) line. Here it reuses
    carracing-vmc's config and profiles under a new name, to show no other code has to change."""
    base = FAMILIES[DEFAULT_FAMILY]
    third = dataclasses.replace(base, name="third-family", summary="a test family")
    monkeypatch.setitem(FAMILIES, third.name, third)
    assert resolve_config("smoke", agent="third-family").profile == "smoke"
    assert family("third-family") is third
