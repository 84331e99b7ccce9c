"""Quiet runs: a normal `dreamops` command prints its own progress and summary, not its libraries'
logs. `--verbose` keeps everything. Applied before Prefect and MLflow are imported: both read their
logging levels from the environment once, at import."""
from __future__ import annotations

import importlib
import logging
import os
import warnings

# Warnings every run would print although nothing is wrong; each says why it is benign.
BENIGN_WARNINGS = (
    # our pyfunc's predict takes frames or a dict of arrays and checks them itself (raised inside
    # MLflow's own "once" scope at class definition, so IMPORT_WARNERS below is what silences it)
    r".*Add type hints to the `predict` method",
    # an input example would run predict at logging time; the bundle has its own known-answer tests
    r".*An input example was not provided when logging the model",
    # MLflow registers its local artifact source twice and warns that the two are ambiguous
    r"The specified dataset source can be interpreted in multiple ways",
)
# Loggers whose INFO lines are the libraries' own bookkeeping (table creation, temporary folders).
CHATTY_LOGGERS = ("great_expectations", "great_expectations.data_context.types.base", "alembic",
                  "mlflow.store.db.utils")
# Modules that warn while they are imported from inside MLflow's own warnings scope (its "once"
# filter outranks ours); imported here with the warning display off, they are then cached.
IMPORT_WARNERS = ("dreamops.registry.pyfunc",)  # MLflow asks the pyfunc classes for type hints
# Library settings read from the environment; set only where the caller has not chosen them.
QUIET_ENV = {
    "PREFECT_LOGGING_LEVEL": "WARNING",  # task-run lines; the progress bars say as much
    "MLFLOW_LOGGING_LEVEL": "ERROR",  # e.g. 'a Python object is pickled' on every log_model
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def quiet_libraries(verbose: bool = False) -> None:
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for pattern in BENIGN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not any(isinstance(f, _WarningsAndUp) for f in logger.filters):
            logger.addFilter(_WarningsAndUp())  # outlasts a library's own setLevel at import (GX does that)
    for module in IMPORT_WARNERS:
        _import_without_warnings(module)


class _WarningsAndUp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _import_without_warnings(module: str) -> None:
    shown = warnings.showwarning
    warnings.showwarning = lambda *args, **kwargs: None
    try:
        importlib.import_module(module)
    finally:
        warnings.showwarning = shown
