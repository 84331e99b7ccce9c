"""The agent families dreamops trains, in one registry: `FAMILIES`.

Everything family-agnostic (the CLI, the API, the train flow, the config loader) reads a family
from here instead of comparing names. A family is light on purpose: its name, its profiles, what
it can do, and the dotted paths of its own modules, loaded on first use, so that `dreamops --help`
and the API's request validation import no torch and no simulator.

A new family adds its own modules (config, train flow) and one `Family(...)` line below; the
contract tests (tests/test_families.py, tests/models/test_agent_contract.py) run over `FAMILIES`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# What a family may not support yet; each is one flag on Family and one message here.
CAPABILITIES = {
    "warm_start": "--parent (a warm start from a registered version)",
    "fleet_data": "data_window_hours (training on the fleet's uploaded episodes)",
    "evaluate": "`dreamops evaluate` of a registered version",
    "profile": "`dreamops profile` (latency of a registered version)",
    "drift_eval": "`dreamops drift-eval`",
    "fleet": "the simulated fleet (`dreamops fleet`)",
}


@dataclass(frozen=True)
class Family:
    name: str                  # also the name its versions are registered under
    summary: str
    profiles: tuple[str, ...]  # the keys of its profile table (tests/test_families.py checks)
    config: str                # "module:Class" of its typed config (a RunConfig)
    profile_table: str         # "module:NAME" of its {profile: overlay} table
    train_flow: str            # "module:function" the train flow hands a run of this family to
    data_gate: str             # "module:function" (path, cfg, docs_dir) -> DataGateReport: `dreamops validate`
    summary_lines: str         # "module:function" (train result) -> the lines `dreamops train` prints
    bundle: str                # "module:Class" of its weights file: .load(path), .component_hashes()
    bundle_file: str           # that file's name among a registered version's artifacts
    evaluator: str             # "module:function" (bundle path | baseline name, name, seeds, max_steps|None, workers,
                               #   ray_address, show_progress) -> tasks.common.VersionReport: `dreamops evaluate`
    profiler: str              # "module:function" (bundle, iterations) -> {part: {p50_ms, p95_ms, p99_ms}}
    baselines: tuple[str, ...] = ()   # what `dreamops evaluate --baseline` accepts
    robot: str = ""            # "module:Class" of its robot in the simulated fleet: (bundle, RobotSetup), .play(seed)
                               #   -> MeasuredEpisode, .close(), SCENARIOS, FAULTS and LATENTS (what its
                               #   latents are: drift-eval's cache key names it); "" without a fleet
    upload_schema: str = "dreamops.validation.data_gate:CARRACING_SCHEMA"
                               # "module:NAME" of the DataSchema a fleet upload must meet (the API's upload route)
    drift_signals: str = "dreamops.tasks.drift:residual_and_reward_signals"
                               # "module:function" (baseline, window, min_reward) -> [SignalResult]: the drift
                               #   decision's two signals next to the latents' MMD (tasks/drift.py)
    canary_test: str = "welch"  # the canary's statistic (api/stats.py): welch on episode reward, or
                                # two_proportion on success (the family's robots report reward 1 or 0)
    warm_start: bool = False
    fleet_data: bool = False
    evaluate: bool = False
    profile: bool = False
    drift_eval: bool = False
    fleet: bool = False
    default_profile: str = "quick"

    def load(self, entry: str) -> Any:
        """The object one of the entry fields names, e.g. family.load("config") -> the config class."""
        module, _, attr = getattr(self, entry).partition(":")
        return getattr(importlib.import_module(module), attr)

    def supports(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
        return bool(getattr(self, capability))

    def require(self, capability: str) -> None:
        """ValueError with one clear line if this family cannot do `capability` yet."""
        if not self.supports(capability):
            able = [f.name for f in FAMILIES.values() if f.supports(capability)]
            raise ValueError(f"{CAPABILITIES[capability]} is not available for {self.name} yet "
                             f"(available for: {', '.join(able) or 'no family'})")

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise ValueError(f"unknown profile {profile!r} for {self.name}; choose one of {', '.join(self.profiles)}")


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("carracing-vmc", "CarRacing from pixels: V (VAE) -> M (MDN-RNN) -> C evolved by CMA-ES in the dream",
           profiles=("smoke", "quick", "standard", "gpu", "full"),
           config="dreamops.tasks.config:CarRacingConfig", profile_table="dreamops.tasks.config:PROFILES",
           train_flow="dreamops.flows.train:train_vmc", data_gate="dreamops.tasks.gate:validate_dataset",
           summary_lines="dreamops.flows.train:summary_lines",
           bundle="dreamops.models.bundle:VMCBundle", bundle_file="vmc_bundle.pt",
           evaluator="dreamops.tasks.evaluate:evaluate_version", profiler="dreamops.tasks.profile:profile_latency",
           baselines=("random", "rule_based"), robot="dreamops.tasks.robot_episode:CarRacingRobot", fleet=True,
           warm_start=True, fleet_data=True, evaluate=True, profile=True, drift_eval=True),
    Family("pick-vla", "language-conditioned pick in a PyBullet cell: encoder + RSSM + flow-matching action head",
           profiles=("smoke", "quick", "standard", "gpu", "full"),
           config="dreamops.tasks.pick_config:PickVLAConfig", profile_table="dreamops.tasks.pick_config:PICK_PROFILES",
           train_flow="dreamops.flows.train_pick:train_pick", data_gate="dreamops.tasks.pick_data:validate_dataset",
           summary_lines="dreamops.flows.train_pick:summary_lines",
           bundle="dreamops.models.pick_vla:PickVLA", bundle_file="pick_vla.pt",
           evaluator="dreamops.tasks.evaluate_pick:evaluate_version",
           profiler="dreamops.tasks.profile:profile_chunk_latency", baselines=("expert", "no_language"),
           robot="dreamops.tasks.pick_robot:PickRobot", fleet=True,
           drift_signals="dreamops.tasks.drift:calibration_and_success_signals",
           upload_schema="dreamops.validation.data_gate:PICK_UPLOAD_SCHEMA",
           canary_test="two_proportion", warm_start=True, fleet_data=True, evaluate=True, profile=True, drift_eval=True),
)}

DEFAULT_FAMILY = "carracing-vmc"


def family(name: str) -> Family:
    """The registered family `name`; ValueError naming the choices otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(FAMILIES)}") from None
