"""Shared fixtures. One Prefect temporary server per test session (it takes ~15 s to start)."""
from __future__ import annotations

import os

import pytest

# Test tiers. `make test-fast` runs `-m "not e2e and not servers"`: unit, numeric, contract and data
# tests, no server, browser or end-to-end run. A test is in the `servers` tier when it asks for one
# of these fixtures (PostgreSQL, a Prefect server, the MLflow + S3 stack, the API on its databases).
SERVER_FIXTURES = frozenset({"prefect_server", "stack", "on_stack", "api_db"})


# `make test` runs on 2 processes (pytest-xdist, --dist loadgroup). Every test on the production
# stack goes to one of them: the stack is a session fixture, and a second copy would cost a minute
# of start-up and a second set of servers on the same 2 cores.
STACK_FIXTURES = frozenset({"stack", "on_stack"})
# The modules whose tests use it, sent to one worker as one group by `pytest_xdist_make_scheduler`
# below. xdist 3.8 groups by an `@group` suffix it writes into `item._nodeid`, which pytest 9 no
# longer reads: `xdist_group` marks silently do nothing, and each worker started its own stack.
# Collection refuses a module that uses the stack without being listed here.
STACK_MODULES = frozenset({"tests/api/test_e2e_drift.py", "tests/api/test_e2e_fleet.py",
                           "tests/api/test_e2e_pick.py", "tests/registry/test_production_stack.py"})


# A module that reuses what another registered on the stack runs right after it: the drift e2e needs
# two passed versions, which the fleet e2e's two smoke trainings leave (run alone, it trains them).
# Right after, not last: the worker that holds the stack's tests takes other work only when two of
# them are left, so a long one left last keeps the other worker idle for its length (e2e drift ~4 min).
RUN_AFTER = {"tests/api/test_e2e_drift.py": "tests/api/test_e2e_fleet.py"}


def _module(item) -> str:
    return item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    first = {}
    for i, item in enumerate(items):
        first.setdefault(_module(item), i)
    def key(i: int, item) -> tuple[int, int, int]:   # (the module it follows or its own, after it?, order)
        after = RUN_AFTER.get(_module(item))
        return (first[after], 1, i) if after in first else (first[_module(item)], 0, i)
    order = {id(item): key(i, item) for i, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if SERVER_FIXTURES & names:
            item.add_marker(pytest.mark.servers)
        if STACK_FIXTURES & names and _module(item) not in STACK_MODULES:
            raise pytest.UsageError(f"{_module(item)} uses the production stack: add it to STACK_MODULES "
                                    "in tests/conftest.py (its tests must run on the stack's worker)")


def work_unit(nodeid: str) -> str:
    """What a worker gets at once: the stack's modules together, every other test alone."""
    return "stack" if nodeid.split("::")[0] in STACK_MODULES else nodeid


def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup with the stack's modules as one group (see STACK_MODULES); every other test
    is scheduled on its own, as loadgroup does."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class StackGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return StackGroupScheduling(config, log)


@pytest.fixture(scope="session")
def prefect_server():
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory):
    """An empty MLflow SQLite store, migrated once per session: migrating a new file takes ~5 s on
    2 cores, and a hundred tests start from an empty home. Runs in subprocesses (the CLI and smoke
    tests) still create theirs from nothing."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    for store in (TrackingStore(f"sqlite:///{path}", str(path.parent / "unused")), RegistryStore(f"sqlite:///{path}")):
        store.engine.dispose()
    return path


@pytest.fixture
def dreamops_home(tmp_path, monkeypatch, migrated_mlflow_db):
    """An empty embedded store (MLflow SQLite, datasets) for one test."""
    import shutil

    from dreamops.settings import get_settings

    (tmp_path / ".dreamops").mkdir(exist_ok=True)
    shutil.copyfile(migrated_mlflow_db, tmp_path / ".dreamops" / "mlflow.db")
    monkeypatch.setenv("DREAMOPS_HOME", str(tmp_path / ".dreamops"))
    monkeypatch.setenv("DREAMOPS_WORKERS", "2")
    get_settings.cache_clear()
    yield tmp_path / ".dreamops"
    get_settings.cache_clear()
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def good_dataset(tmp_path_factory):
    """A small real dataset that passes the smoke profile's data gate (the corpus starts from it)."""
    from tests.validation.corpus import make_good

    return make_good(tmp_path_factory.mktemp("good-store"))


@pytest.fixture(scope="session")
def good_pick_dataset(tmp_path_factory):
    """Real pick-vla demonstrations that pass their data gate (the pick corpus starts from them)."""
    from tests.validation.corpus import make_good_pick

    return make_good_pick(tmp_path_factory.mktemp("good-pick-store"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """PostgreSQL + S3 (moto) + `mlflow server` + the dreamops API on loopback, one per session."""
    from tests.stack import production_stack

    with production_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture
def on_stack(stack, dreamops_home, monkeypatch):
    """dreamops (CLI, flows) configured by settings only to use the production stack."""
    from dreamops.settings import get_settings

    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield stack
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _no_quiet_env_leak():
    """A CLI command run in-process sets the quiet library levels in os.environ (dreamops.quiet);
    they must not reach later tests' subprocesses (a worker whose INFO log a test reads)."""
    from dreamops.quiet import QUIET_ENV

    before = {key: os.environ.get(key) for key in QUIET_ENV}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
