"""The data gate: Great Expectations 1.x suites over a dataset's episodes and frames.

Nothing in the dataset is trusted: dataset.json is checked against the manifest, every shard is
found only inside the dataset, read through the one shard reader (dreamops.shards), checked
against its content hash and its manifest length, and its arrays are summarised here, so a dataset
uploaded by a fleet is checked the same way as one we collected. A shard that cannot be read (or
lies outside the dataset) fails that one check: its other checks are not judged, so one root cause
is reported once. Every failed episode check names its episodes and shards.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dreamops.shards import DatasetIntegrityError, arrays_hash, info_problem, read_info, read_shard, shard_path


@dataclass(frozen=True)
class DataSchema:
    """What one agent family's shards hold; the gate's checks are built from it."""
    name: str
    """The family the schema describes (carracing, pick)."""
    frame_shape: tuple[int, ...] = (64, 64, 3)
    """Per-step shape of `obs` (uint8)."""
    image_rows: int = 56
    """Top rows of each frame the black / white pixel checks look at (CarRacing's dashboard strip
    below row 56 is black by design)."""
    actions: tuple[tuple[str, float, float], ...] = ()
    """(name, low, high) per action dimension, in order: one frame column and range check each."""
    extras: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    """(array name, per-step shape, dtype) of further arrays: each must be there with length T, that
    shape and dtype, and finite."""
    instruction: bool = False
    """Shards hold a non-empty string `instruction` (a 0-d numpy unicode array)."""
    extra_ranges: tuple[tuple[str, float, float], ...] = ()
    """(extra name, low, high): per-frame minimum and maximum of that extra as frame columns
    `<name>_min` / `<name>_max`, both expected within [low, high]."""

    @property
    def action_names(self) -> list[str]:
        return [name for name, _, _ in self.actions]


CARRACING_SCHEMA = DataSchema("carracing", actions=(("steer", -1.0, 1.0), ("throttle", 0.0, 1.0), ("brake", 0.0, 1.0)))
PICK_SCHEMA = DataSchema(
    "pick", image_rows=64, actions=tuple((name, -1.0, 1.0) for name in ("dx", "dy", "dz", "grip")),
    extras=(("depth", (64, 64, 1), "float32"), ("proprio", (21,), "float32"), ("held", (), "bool"),
            ("collisions", (), "bool"), ("target_pos", (3,), "float32")),
    instruction=True, extra_ranges=(("depth", 0.05, 2.0),))  # PickConfig's depth_near and depth_far
# proprio: sim.pick.PROPRIO_DIM (joints, gripper, end effector measured and commanded; not imported:
# the gates do not load the simulator)
# What a pick cell of the fleet uploads: what its sensors give (camera, depth, proprioception, the
# gripper's grasp signal), not the demonstrations' privileged target position
PICK_UPLOAD_SCHEMA = DataSchema("pick-upload", image_rows=PICK_SCHEMA.image_rows, actions=PICK_SCHEMA.actions,
                                extras=tuple(e for e in PICK_SCHEMA.extras if e[0] != "target_pos"),
                                instruction=True, extra_ranges=PICK_SCHEMA.extra_ranges)


@dataclass
class DataGateThresholds:
    min_episodes: int = 30
    """Episodes a training run needs (profiles set their own)."""
    min_frames: int = 7000
    """Frames (agent steps) a training run needs."""
    min_episode_length: int = 51
    """Shortest acceptable episode (the seed: more than 50 steps)."""
    corrupt_pixel_fraction: float = 0.05
    """A frame with more than this share of pure black or pure white playfield pixels is corrupt."""
    max_corrupt_frame_fraction: float = 0.01
    """The dataset fails when more than this share of its frames is corrupt."""
    skip_start_steps: int = 0
    """Steps at each episode's start left out of the pixel checks (CarRacing's zoom-in opens on
    the black void around the playfield); the train flow derives it from the frame skip."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str
    observed: object = None


@dataclass
class DataGateReport:
    dataset: str
    checks: list[CheckResult]
    data_docs: str | None = None
    episodes: int = 0
    frames: int = 0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = (f"data gate {'PASSED' if self.passed else 'FAILED'} for {self.dataset}: "
                f"{self.episodes} episodes, {self.frames} frames, "
                f"{len(self.checks) - len(self.failures)}/{len(self.checks)} checks passed")
        return "\n".join([head] + [f"  FAILED {c.name}: {c.message}" for c in self.failures])

    def markdown(self) -> str:
        rows = "\n".join(f"| {c.name} | {'passed' if c.passed else '**failed**'} | {c.message} |" for c in self.checks)
        return (f"# Data gate: {'passed' if self.passed else 'FAILED'}\n\nDataset `{self.dataset}`: {self.episodes} "
                f"episodes, {self.frames} frames.\n\n| check | result | observed |\n|---|---|---|\n{rows}\n")

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "passed": self.passed, "episodes": self.episodes, "frames": self.frames,
                "data_docs": self.data_docs, "checks": [asdict(c) | {"observed": str(c.observed)} for c in self.checks]}


class DataGateError(RuntimeError):
    """The dataset failed the data gate; carries the report."""

    def __init__(self, report: DataGateReport):
        super().__init__(report.summary())
        self.report = report


EPISODE_COLUMNS = ["episode_id", "shard", "path_ok", "readable", "hash_ok", "length_ok", "obs_shape_ok", "obs_dtype_ok",
                   "actions_shape_ok", "actions_dtype_ok", "aligned", "dones_ok", "length", "nonfinite"]


def _extras_problem(extras: dict[str, np.ndarray], length: int, schema: DataSchema) -> str:
    """'' when every extra the schema declares is there with shape [T, *shape], its dtype and finite
    values; else what is wrong with the first bad one."""
    for name, shape, dtype in schema.extras:
        a = extras.get(name)
        if a is None:
            return f"{name} missing"
        if tuple(a.shape) != (length, *shape):
            return f"{name} of shape {list(a.shape)}, expected [{', '.join(map(str, (length, *shape)))}]"
        if a.dtype != np.dtype(dtype):
            return f"{name} of dtype {a.dtype}, expected {dtype}"
        if np.issubdtype(a.dtype, np.number) and not np.isfinite(a).all():
            return f"NaN or inf in {name}"
    return ""


def episode_problem(arrays: dict[str, np.ndarray], schema: DataSchema) -> str:
    """'' when one episode's arrays (an upload) hold what `schema` asks of a shard - obs uint8
    [T, *frame_shape], actions float [T, A], rewards [T], dones [T] (finite numbers), the extras and
    the instruction - else the first problem, in words. The gate judges whole datasets; this judges
    one episode before it is stored."""
    missing = [k for k in ("obs", "actions", "rewards", "dones") if k not in arrays]
    if missing:
        return f"lacks {missing}"
    obs, actions, rewards, dones = (arrays[k] for k in ("obs", "actions", "rewards", "dones"))
    n = len(actions) if actions.ndim else 0   # 0-d arrays have no length
    shape = ", ".join(map(str, schema.frame_shape))
    if n == 0 or obs.shape != (n, *schema.frame_shape) or obs.dtype != np.uint8 \
            or actions.shape != (n, len(schema.actions)) or rewards.shape != (n,) or dones.shape != (n,):
        return (f"arrays must be obs uint8 [T,{shape}], actions [T,{len(schema.actions)}], rewards [T], dones [T] "
                f"with T >= 1")
    for name, a in (("actions", actions), ("rewards", rewards), ("dones", dones)):
        if a.dtype.kind not in "biuf" or not np.isfinite(a.astype(np.float64)).all():
            return f"{name} must be finite numbers"
    extras = _extras_problem(arrays, n, schema)
    if extras:
        return extras
    instruction = arrays.get("instruction")
    if schema.instruction and not (instruction is not None and instruction.ndim == 0 and instruction.dtype.kind == "U"
                                   and str(instruction).strip()):
        return "instruction must be a non-empty 0-d unicode array"
    return ""


def _dones_ok(dones: np.ndarray, length: int) -> bool:
    """dones: one flag per step, bool (or 0/1 numbers: finite, nothing else)."""
    if dones.shape != (length,):
        return False
    if dones.dtype == np.bool_:
        return True
    return bool(np.issubdtype(dones.dtype, np.number) and np.isin(dones, (0, 1)).all())


def _scan_shard(dataset: Path, shard: object, expected_hash: object, manifest_length: object,
                skip_start_steps: int = 0, schema: DataSchema = CARRACING_SCHEMA) -> tuple[dict, pd.DataFrame | None]:
    """Facts of one shard and its per-frame summaries (None if it cannot be summarised). A shard
    outside the dataset or unreadable leaves its other facts None: not judged."""
    row = {"path_ok": True, "readable": None, "hash_ok": None, "length_ok": None, "obs_shape_ok": None,
           "obs_dtype_ok": None, "actions_shape_ok": None, "actions_dtype_ok": None, "aligned": None, "dones_ok": None,
           "length": None, "nonfinite": None}
    if schema.extras:
        row["extras_problem"] = None
    if schema.instruction:
        row["instruction_ok"] = None
    try:
        shard_path(dataset, shard)
    except DatasetIntegrityError:
        row["path_ok"] = False
        return row, None
    try:
        data = read_shard(dataset, shard, None)
        arrays = {k: data[k] for k in ("obs", "actions", "rewards", "dones")}
    except Exception:  # a corrupt zip, a truncated file, a missing array, a pickled object: all "unreadable"
        row["readable"] = False
        return row, None
    extras = {k: data[k] for k, _, _ in schema.extras if k in data}
    instruction = data.get("instruction")
    obs, actions, rewards, dones = (arrays[k] for k in ("obs", "actions", "rewards", "dones"))
    row["readable"] = True
    row["hash_ok"] = isinstance(expected_hash, str) and arrays_hash(data) == expected_hash
    if min(a.ndim for a in arrays.values()) == 0:  # 0-d arrays: no steps at all
        row.update(obs_shape_ok=False, aligned=False, length=0, nonfinite=0, length_ok=False, dones_ok=False,
                   obs_dtype_ok=obs.dtype == np.uint8, actions_shape_ok=False, actions_dtype_ok=False)
        if schema.extras:
            row["extras_problem"] = "0-d arrays"
        if schema.instruction:
            row["instruction_ok"] = False
        return row, None
    row["obs_shape_ok"] = obs.ndim == 4 and tuple(obs.shape[1:]) == schema.frame_shape
    row["obs_dtype_ok"] = obs.dtype == np.uint8
    row["actions_shape_ok"] = actions.ndim == 2 and actions.shape[1] == len(schema.actions)
    row["actions_dtype_ok"] = actions.dtype == np.float32 and rewards.dtype == np.float32
    row["aligned"] = len(obs) == len(actions) == len(rewards) == len(dones)
    row["length"] = int(len(actions))
    row["length_ok"] = bool(manifest_length is not None and not pd.isna(manifest_length)
                            and int(manifest_length) == len(actions))
    row["dones_ok"] = _dones_ok(dones, len(actions))
    row["nonfinite"] = int(sum(np.size(a) - np.isfinite(a.astype(np.float64)).sum()
                               for a in (actions, rewards) if np.issubdtype(a.dtype, np.number)))
    if schema.extras:
        row["extras_problem"] = _extras_problem(extras, len(actions), schema)
    if schema.instruction:
        row["instruction_ok"] = bool(instruction is not None and instruction.ndim == 0
                                     and instruction.dtype.kind == "U" and str(instruction).strip())
    if not (row["obs_shape_ok"] and row["actions_shape_ok"] and row["aligned"]) or len(obs) == 0:
        return row, None
    ranged = {name: extras[name] for name, _, _ in schema.extra_ranges
              if name in extras and len(extras[name]) == len(obs)}
    return row, frame_summaries(obs, actions, rewards, skip_start_steps, schema, ranged)


def frame_summaries(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, skip_start_steps: int = 0,
                    schema: DataSchema = CARRACING_SCHEMA, extras: dict[str, np.ndarray] | None = None
                    ) -> pd.DataFrame:
    """Per-frame columns the gate checks: share of pure black / pure white pixels in the schema's
    image rows (NaN, i.e. skipped by the expectations, for the first skip_start_steps), each action,
    the reward, and the minimum / maximum of each ranged extra (NaN where `extras` lacks it)."""
    play = obs[:, :schema.image_rows]
    white_value = np.iinfo(np.uint8).max if obs.dtype == np.uint8 else 1.0
    black = (play == 0).all(axis=-1).mean(axis=(1, 2))
    white = (play >= white_value).all(axis=-1).mean(axis=(1, 2))
    black[:skip_start_steps] = np.nan
    white[:skip_start_steps] = np.nan
    columns = {"t": np.arange(len(obs)), "frac_black": black, "frac_white": white}
    columns.update({name: actions[:, i].astype(np.float64) for i, name in enumerate(schema.action_names)})
    columns["reward"] = rewards.astype(np.float64)
    for name, _, _ in schema.extra_ranges:
        a = (extras or {}).get(name)
        flat = a.reshape(len(a), -1).astype(np.float64) if a is not None else np.full((len(obs), 1), np.nan)
        columns[f"{name}_min"], columns[f"{name}_max"] = flat.min(axis=1), flat.max(axis=1)
    return pd.DataFrame(columns)


def scan_dataset(path: Path, skip_start_steps: int = 0, schema: DataSchema = CARRACING_SCHEMA
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (episodes table, frames table) recomputed from the shards the manifest lists."""
    manifest_path = path / "manifest.parquet"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{path} has no manifest.parquet: not a dataset")
    manifest = pd.read_parquet(manifest_path)
    episodes, frames = [], []
    n = len(manifest)
    for episode_id, shard, digest, length in zip(manifest.get("episode_id", [None] * n), manifest.get("shard", [None] * n),
                                                 manifest.get("sha256", [None] * n), manifest.get("length", [None] * n)):
        row, f = _scan_shard(path, shard, digest, length, skip_start_steps, schema)
        if row.get("extras_problem"):
            row["extras_problem"] = f"{episode_id}: {row['extras_problem']}"
        episodes.append({"episode_id": episode_id, "shard": shard, **row})
        if f is not None:
            frames.append(f.assign(episode_id=episode_id))
    columns = (EPISODE_COLUMNS + (["extras_problem"] if schema.extras else [])
               + (["instruction_ok"] if schema.instruction else []))
    ep_table = pd.DataFrame(episodes, columns=columns)
    frame_columns = (["t", "frac_black", "frac_white", *schema.action_names, "reward"]
                     + [f"{name}_{stat}" for name, _, _ in schema.extra_ranges for stat in ("min", "max")])
    fr_table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=[*frame_columns, "episode_id"], dtype=float)
    return ep_table, fr_table


def _expectations(t: DataGateThresholds, schema: DataSchema = CARRACING_SCHEMA):
    """(table, check name, expectation, what a failure means) - the suite, in one place."""
    import great_expectations.expectations as gxe

    ok = [True]
    corrupt_ok = 1.0 - t.max_corrupt_frame_fraction
    return [
        ("episodes", "dataset_not_empty", gxe.ExpectTableRowCountToBeBetween(min_value=1), "empty dataset: no episodes"),
        ("episodes", "enough_episodes", gxe.ExpectTableRowCountToBeBetween(min_value=t.min_episodes),
         f"fewer episodes than the profile needs ({t.min_episodes})"),
        ("episodes", "shard_paths", gxe.ExpectColumnValuesToBeInSet(column="path_ok", value_set=ok),
         "shard path outside the dataset's shards folder"),
        ("episodes", "shards_readable", gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=ok),
         "corrupt shard: file cannot be read"),
        ("episodes", "shard_hashes", gxe.ExpectColumnValuesToBeInSet(column="hash_ok", value_set=ok),
         "shard content differs from the manifest's content hash (changed after the dataset was made)"),
        ("episodes", "manifest_lengths", gxe.ExpectColumnValuesToBeInSet(column="length_ok", value_set=ok),
         "the manifest's episode length differs from the shard's"),
        ("episodes", "episode_ids_unique", gxe.ExpectColumnValuesToBeUnique(column="episode_id"), "duplicated episode ids"),
        ("episodes", "image_shape", gxe.ExpectColumnValuesToBeInSet(column="obs_shape_ok", value_set=ok),
         f"wrong image shape (expected [T, {', '.join(map(str, schema.frame_shape))}])"),
        ("episodes", "image_dtype", gxe.ExpectColumnValuesToBeInSet(column="obs_dtype_ok", value_set=ok),
         "wrong image dtype (expected uint8)"),
        ("episodes", "action_schema", gxe.ExpectColumnValuesToBeInSet(column="actions_shape_ok", value_set=ok),
         f"wrong action shape (expected [T, {len(schema.actions)}])"),
        ("episodes", "action_dtype", gxe.ExpectColumnValuesToBeInSet(column="actions_dtype_ok", value_set=ok),
         "wrong action/reward dtype (expected float32)"),
        ("episodes", "arrays_aligned", gxe.ExpectColumnValuesToBeInSet(column="aligned", value_set=ok),
         "arrays of an episode have different lengths"),
        ("episodes", "dones_valid", gxe.ExpectColumnValuesToBeInSet(column="dones_ok", value_set=ok),
         "dones must be one flag per step: bool [T] (or finite 0/1)"),
        ("episodes", "no_empty_shard", gxe.ExpectColumnValuesToBeBetween(column="length", min_value=1), "empty shard"),
        ("episodes", "episode_length", gxe.ExpectColumnValuesToBeBetween(column="length", min_value=t.min_episode_length),
         f"truncated episode: shorter than {t.min_episode_length} steps"),
        ("episodes", "finite_values", gxe.ExpectColumnValuesToBeBetween(column="nonfinite", min_value=0, max_value=0),
         "NaN or inf in actions or rewards"),
        *_schema_expectations(schema, "episodes"),
        ("frames", "enough_frames", gxe.ExpectTableRowCountToBeBetween(min_value=t.min_frames),
         f"fewer frames than the profile needs ({t.min_frames})"),
        ("frames", "black_frames", gxe.ExpectColumnValuesToBeBetween(column="frac_black", max_value=t.corrupt_pixel_fraction,
                                                                     mostly=corrupt_ok),
         f"too many corrupt (black) frames: > {t.corrupt_pixel_fraction:.0%} pure black pixels"),
        ("frames", "white_frames", gxe.ExpectColumnValuesToBeBetween(column="frac_white", max_value=t.corrupt_pixel_fraction,
                                                                     mostly=corrupt_ok),
         f"too many corrupt (white) frames: > {t.corrupt_pixel_fraction:.0%} pure white pixels"),
        *[("frames", f"{name}_range", gxe.ExpectColumnValuesToBeBetween(column=name, min_value=lo, max_value=hi),
           f"{name} action outside [{lo:g}, {hi:g}]") for name, lo, hi in schema.actions],
        *[("frames", f"{name}_not_nan", gxe.ExpectColumnValuesToNotBeNull(column=name), f"NaN {name} actions")
          for name in schema.action_names],
        ("frames", "reward_not_nan", gxe.ExpectColumnValuesToNotBeNull(column="reward"), "NaN rewards"),
        *_schema_expectations(schema, "frames"),
    ]


def _schema_expectations(schema: DataSchema, table: str) -> list:
    """The checks only some schemas ask for, on one table: extra arrays and the instruction
    (episodes), ranges of extras (frames)."""
    import great_expectations.expectations as gxe

    plan = []
    if schema.extras:
        wanted = ", ".join(f"{name} [T{''.join(f', {n}' for n in shape)}] {dtype}" for name, shape, dtype in schema.extras)
        plan.append(("episodes", "extras_ok", gxe.ExpectColumnValuesToBeInSet(column="extras_problem", value_set=[""]),
                     f"missing or malformed extra arrays (expected {wanted}, finite)"))
    if schema.instruction:
        plan.append(("episodes", "instruction_present",
                     gxe.ExpectColumnValuesToBeInSet(column="instruction_ok", value_set=[True]),
                     "missing or empty instruction (expected a non-empty 0-d unicode array `instruction`)"))
    for name, lo, hi in schema.extra_ranges:
        plan += [("frames", f"{name}_{stat}_range",
                  gxe.ExpectColumnValuesToBeBetween(column=f"{name}_{stat}", min_value=lo, max_value=hi),
                  f"{name} outside [{lo:g}, {hi:g}] (per-frame {stat}imum)") for stat in ("min", "max")]
    return [entry for entry in plan if entry[0] == table]


def _observed(result: dict) -> object:
    if "observed_value" in result:
        return result["observed_value"]
    out = {k: result[k] for k in ("unexpected_count", "unexpected_percent") if k in result}
    if result.get("partial_unexpected_list"):
        out["examples"] = [None if isinstance(v, float) and math.isnan(v) else v
                           for v in result["partial_unexpected_list"][:5]]
    return out


def run_data_gate(path: Path, thresholds: DataGateThresholds, docs_dir: Path | None = None,
                  schema: DataSchema = CARRACING_SCHEMA) -> DataGateReport:
    """Validate the dataset at `path` against `schema`; Data Docs HTML goes to docs_dir if given.
    Never raises on bad data: the report says what failed (the flow raises DataGateError)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    name = path.name
    try:
        episodes, frames = scan_dataset(path, thresholds.skip_start_steps, schema)
    except Exception as exc:  # no or unreadable manifest
        return DataGateReport(name, [CheckResult("manifest_readable", False, f"manifest cannot be read: {exc}")])
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.get_site_names()):
        context.delete_data_docs_site(site)
    if docs_dir is not None:
        context.add_data_docs_site(site_name="dreamops", site_config={
            "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())}})
    source = context.data_sources.add_pandas(name="dataset")
    tables = {"episodes": episodes, "frames": frames}
    plan = _expectations(thresholds, schema)
    validations = []
    for table in tables:
        batch = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe(name=f"{table}-all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"dreamops-{table}"))
        for t_name, _, expectation, _ in plan:
            if t_name == table:
                suite.add_expectation(expectation)
        validations.append(context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate-{table}", data=batch, suite=suite)))
    results = {}
    for vd, table in zip(validations, tables):
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if docs_dir is not None else []
        checkpoint = context.checkpoints.add(gx.Checkpoint(name=f"gate-{table}", validation_definitions=[vd],
                                                           actions=actions))
        outcome = checkpoint.run(batch_parameters={"dataframe": tables[table]})
        for vr in outcome.run_results.values():
            for r in vr.results:
                key = (table, r.expectation_config.type, r.expectation_config.kwargs.get("column"),
                       json.dumps({k: r.expectation_config.kwargs.get(k) for k in ("min_value", "max_value")}))
                results[key] = r
    checks = []
    for table, check, expectation, meaning in plan:
        cfg = expectation.configuration
        key = (table, cfg.type, cfg.kwargs.get("column"),
               json.dumps({k: cfg.kwargs.get(k) for k in ("min_value", "max_value")}))
        r = results[key]
        observed = _observed(r.result)
        where = "" if r.success else _offenders(tables[table], cfg)
        checks.append(CheckResult(check, bool(r.success), "ok" if r.success else f"{meaning}{where}; observed {observed}",
                                  observed))
    docs = str(docs_dir / "index.html") if docs_dir is not None and (docs_dir / "index.html").exists() else None
    return DataGateReport(name, [_info_check(path), *checks], docs, len(episodes), len(frames))


def _info_check(path: Path) -> CheckResult:
    """dataset.json is there, names a content hash, and agrees with the manifest (hash over its
    shard hashes, episode and frame counts): what training opens the dataset by."""
    try:
        info = read_info(path)
        manifest = pd.read_parquet(path / "manifest.parquet")
        problem = info_problem(info, list(manifest["sha256"]), list(manifest["length"]))
    except DatasetIntegrityError as exc:
        problem = str(exc)
    except KeyError as exc:
        problem = f"the manifest has no {exc} column"
    return CheckResult("dataset_info", not problem, "ok" if not problem else f"dataset.json: {problem}")


def _offenders(table: pd.DataFrame, cfg, most: int = 5) -> str:
    """' in episode(s) <id> (shards/<file>), ...': the episodes whose rows (episodes or frames) a
    column expectation failed on."""
    column, kw = cfg.kwargs.get("column"), cfg.kwargs
    if column is None or column not in table or "episode_id" not in table:
        return ""
    values = table[column]
    judged = values.notna()
    if cfg.type == "expect_column_values_to_not_be_null":
        bad = ~judged
    elif cfg.type == "expect_column_values_to_be_in_set":
        bad = judged & ~values.isin(kw["value_set"])
    elif cfg.type == "expect_column_values_to_be_between":
        numeric = pd.to_numeric(values, errors="coerce")
        bad = judged & (((numeric < kw["min_value"]) if kw.get("min_value") is not None else False)
                        | ((numeric > kw["max_value"]) if kw.get("max_value") is not None else False))
    elif cfg.type == "expect_column_values_to_be_unique":
        bad = judged & values.duplicated(keep=False)
    else:
        return ""
    rows = table.loc[bad].drop_duplicates("episode_id")
    if rows.empty:
        return ""
    named = [f"{r.episode_id} (shards/{r.shard})" if "shard" in table else str(r.episode_id)
             for r in rows.head(most).itertuples()]
    more = f" and {len(rows) - most} more" if len(rows) > most else ""
    return f" in episode{'s' if len(rows) > 1 else ''} {', '.join(named)}{more}"
