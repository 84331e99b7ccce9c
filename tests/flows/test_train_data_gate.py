"""Bad data stops the train flow before any training: exit code 1, the problem named, no version."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from dreamops.flows.cli import main
from tests.validation.corpus import CORPUS, PICK_CORPUS, make_bad

pytestmark = pytest.mark.e2e


def _refused_before_training(args: list[str], capsys, check: str, words: str, model: str, trained: tuple) -> None:
    """The run exits 1 with the failed check's line naming the problem, creates no version of `model`
    and logs none of the `trained` metric prefixes."""
    assert main(["train", "--profile", "smoke", "--no-progress", *args]) == 1
    err = capsys.readouterr().err
    failed = [line.strip() for line in err.splitlines() if line.strip().startswith("FAILED ")]
    assert any(line.startswith(f"FAILED {check}: ") and words in line for line in failed), err
    # a refusal, not a crash: Prefect's traceback of it is left out (--verbose shows it). (Not "Traceback"
    # alone: Prefect's console handler, kept from an earlier test, reports its closed capture stream.)
    assert "Encountered exception" not in err and "raise DataGateError" not in err
    client = MlflowClient()
    assert client.search_model_versions(f"name='{model}'") == []
    run = client.search_runs([client.get_experiment_by_name("dreamops").experiment_id])[0]
    assert run.info.status == "FAILED" and run.data.tags["gate.data"].startswith("failed")
    assert not any(k.startswith(trained) for k in run.data.metrics)  # nothing trained
    assert any(a.path == "data_gate.json" for a in client.list_artifacts(run.info.run_id))


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_dataset_stops_the_flow_before_training(prefect_server, dreamops_home, good_dataset, tmp_path,
                                                     capsys, case):
    _, check, words = CORPUS[case]
    bad = make_bad(good_dataset, tmp_path, case)
    _refused_before_training(["--dataset", str(bad)], capsys, check, words, "carracing-vmc", ("vae/", "mdn/", "cma/"))


@pytest.mark.parametrize("case", list(PICK_CORPUS))
def test_bad_pick_dataset_stops_the_flow_before_training(prefect_server, dreamops_home, good_pick_dataset, tmp_path,
                                                          capsys, case):
    _, check, words = PICK_CORPUS[case]
    bad = make_bad(good_pick_dataset, tmp_path, case, PICK_CORPUS)
    _refused_before_training(["--agent", "pick-vla", "--dataset", str(bad)], capsys, check, words, "pick-vla",
                             ("pick/", "train/", "holdout/", "eval/"))


def test_verbose_shows_the_traceback_of_a_refused_run(prefect_server, dreamops_home, good_dataset, tmp_path, capsys):
    bad = make_bad(good_dataset, tmp_path, "NaN dones")
    assert main(["train", "--profile", "smoke", "--dataset", str(bad), "--no-progress", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "raise DataGateError(gate)" in err and "FAILED dones_valid" in err


def test_validate_command_exit_codes(dreamops_home, good_dataset, tmp_path, capsys):
    assert main(["validate", "--dataset", str(good_dataset), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "data gate PASSED" in out and "Data Docs:" in out
    bad = make_bad(good_dataset, tmp_path, "NaN actions")
    assert main(["validate", "--dataset", str(bad), "--profile", "smoke"]) == 1
    assert "FAILED throttle_not_nan: NaN throttle actions" in capsys.readouterr().out
    assert main(["validate", "--dataset", "0123456789abcdef"]) == 2


def test_validate_command_uses_the_agents_schema(dreamops_home, good_pick_dataset, tmp_path, capsys):
    """pick-vla data is judged by the gate its train flow runs (the carracing schema refuses it)."""
    assert main(["validate", "--agent", "pick-vla", "--dataset", str(good_pick_dataset), "--profile", "smoke"]) == 0
    assert "data gate PASSED" in capsys.readouterr().out
    bad = make_bad(good_pick_dataset, tmp_path, "NaN dones", PICK_CORPUS)
    assert main(["validate", "--agent", "pick-vla", "--dataset", str(bad), "--profile", "smoke"]) == 1
    assert "FAILED dones_valid" in capsys.readouterr().out
