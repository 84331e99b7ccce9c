"""A version registered by the code before the agent-family contract (commit 89ad4ab, kept as
tests/fixtures/legacy/legacy-store.tar.gz by make_legacy_store.py there) still loads, checks its
weights, serves through MLflow's pyfunc and promotes under the same rules, its audit log
continued."""
from __future__ import annotations

import sqlite3
import tarfile
from pathlib import Path

import numpy as np
import torch
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy" / "legacy-store.tar.gz"
MADE_AT = "/tmp/dreamops-legacy-home"   # where make_legacy_store.py made it: MLflow keeps absolute URIs


def _unpack(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    with sqlite3.connect(home / "mlflow.db") as conn:   # the store moved: point its URIs at the new place
        for (table,) in conn.execute("select name from sqlite_master where type = 'table'").fetchall():
            for _, column, kind, *_ in conn.execute(f"pragma table_info('{table}')").fetchall():
                if kind.upper().startswith(("VARCHAR", "TEXT")):
                    conn.execute(f'update "{table}" set "{column}" = replace("{column}", ?, ?) where "{column}" like ?',
                                 (MADE_AT, str(home), f"%{MADE_AT}%"))
    return home


@pytest.fixture
def legacy_home(tmp_path, monkeypatch):
    import mlflow

    from dreamops.settings import get_settings

    home = _unpack(tmp_path)
    monkeypatch.setenv("DREAMOPS_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
    mlflow.set_tracking_uri(None)


def test_a_version_registered_before_the_family_contract_loads_and_promotes(legacy_home):
    import mlflow
    import sqlalchemy as sa

    from dreamops.models.pick_vla import PickVLA
    from dreamops.registry import store
    from dreamops.registry.promotion import Promotions
    from dreamops.settings import get_settings

    settings = get_settings()
    client = store.configure(settings)
    mv = client.get_model_version("pick-vla", "1")
    assert mv.tags["semver"] == "1.0.0" and mv.tags["validation_status"] == "passed"
    assert store.aliases("pick-vla") == {"staging": "1"}
    loaded, bundle, _ = store.load_bundle("pick-vla", "staging")   # every component against its registered hash
    assert isinstance(bundle, PickVLA) and str(loaded.version) == "1"

    model = mlflow.pyfunc.load_model("models:/pick-vla/1")   # its pickled wrapper is today's class
    rng = np.random.default_rng(0)
    chunk = model.predict({"rgb": rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8),
                           "depth": np.full((1, 64, 64, 1), 0.5, np.float32), "proprio": np.zeros((1, 15), np.float32)},
                          params={"instruction": "pick up the red box", "seed": 0})
    assert chunk.shape == (1, 16, 4) and np.abs(chunk).max() <= 1.0
    # in a cell whose proprioception has the end effector's 6 entries after the 15 it knows, it reads those 15
    assert bundle.arch.proprio_dim == 15
    rgb, depth = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), np.full((1, 64, 64, 1), 0.5, np.float32)
    narrow = rng.normal(size=(1, 15)).astype(np.float32)
    wide = np.concatenate([narrow, rng.normal(size=(1, 6)).astype(np.float32)], axis=1)
    chunks = [bundle.generate(rgb, depth, p, ["pick up the red box"], torch.Generator().manual_seed(0))
              for p in (narrow, wide)]
    assert np.array_equal(chunks[0], chunks[1])

    Promotions.from_settings(settings).promote("pick-vla", "1", "production", reason="legacy check")
    assert store.aliases("pick-vla") == {"staging": "1", "production": "1"}
    with sa.create_engine(settings.sql_url).connect() as conn:
        moves = conn.execute(sa.text("select alias, to_version, source from dreamops_alias_moves order by id")).all()
        # the old flow's staging move and today's promotion in one audit log
    assert [tuple(m) for m in moves] == [("staging", "1", "flow"), ("production", "1", "cli")]
