"""Semantic versions are computed from what changed between versions."""
from __future__ import annotations

import pytest

from dreamops.registry.semver import Fingerprint, next_version, parse

ARCH = {"latent_dim": 32, "hidden_dim": 256, "n_gaussians": 5, "action_repeat": 4}
CFG = {"vae": {"lr": 1e-3}, "cma": {"generations": 60}}


def fp(arch=ARCH, data="d" * 64, cfg=CFG) -> Fingerprint:
    return Fingerprint.of(arch, data, cfg)


def test_first_version_is_1_0_0():
    assert next_version(None, None, fp()) == "1.0.0"


def test_architecture_change_is_major():
    assert next_version("1.4.2", fp(), fp(arch={**ARCH, "latent_dim": 64})) == "2.0.0"


def test_data_change_is_minor():
    assert next_version("1.4.2", fp(), fp(data="e" * 64, cfg={**CFG, "vae": {"lr": 3e-4}})) == "1.5.0"


def test_hyperparameter_change_or_retrain_is_patch():
    assert next_version("1.4.2", fp(), fp(cfg={**CFG, "cma": {"generations": 80}})) == "1.4.3"
    assert next_version("1.4.2", fp(), fp()) == "1.4.3"


def test_unknown_previous_fingerprint_is_major():
    assert next_version("1.4.2", None, fp()) == "2.0.0"


def test_tags_round_trip_and_parse():
    f = fp()
    assert Fingerprint.from_tags({**f.tags(), "data_hash": f.data_hash}) == f
    assert parse("v2.10.3") == (2, 10, 3)
    with pytest.raises(ValueError):
        parse("2.1")
