"""Semantic versions computed from what changed, never typed by hand.

major: the architecture changed (latent size, LSTM size, mixtures, frame skip: old weights and
       consumers of z/h no longer fit);
minor: the training data changed (same architecture, new dataset hash);
patch: only hyperparameters or code changed (same architecture, same data).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Fingerprint:
    """What a version was made of, reduced to three hashes stored as version tags."""
    arch_hash: str
    data_hash: str
    hparams_hash: str

    @classmethod
    def of(cls, architecture: dict, data_hash: str, config: dict) -> "Fingerprint":
        return cls(_digest(architecture), data_hash, _digest(config))

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "Fingerprint | None":
        try:
            return cls(tags["lineage.arch_hash"], tags["data_hash"], tags["lineage.hparams_hash"])
        except KeyError:
            return None

    def tags(self) -> dict[str, str]:
        return {"lineage.arch_hash": self.arch_hash, "lineage.hparams_hash": self.hparams_hash}


def parse(text: str) -> tuple[int, int, int]:
    parts = text.removeprefix("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    return int(parts[0]), int(parts[1]), int(parts[2])


def is_semver(text: str) -> bool:
    try:
        parse(text)
        return True
    except ValueError:
        return False


def next_version(previous: str | None, previous_fp: Fingerprint | None, new: Fingerprint) -> str:
    """The new version's semver given the newest existing one (None for a model's first version)."""
    if previous is None:
        return "1.0.0"
    major, minor, patch = parse(previous)
    if previous_fp is None or previous_fp.arch_hash != new.arch_hash:
        return f"{major + 1}.0.0"
    if previous_fp.data_hash != new.data_hash:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
