"""bench/pick_cell.py: a variant is the cell's set-up and the policy's execution, checked before any episode."""
import pytest

from tests.bench import bench_module

pick_cell = bench_module("pick_cell")


def test_a_variant_splits_into_the_cells_overrides_and_the_policys_execution():
    assert pick_cell.parse_variant(["v", "workspace_low=0.3,-0.25,0.025", "execute=1", "ensemble=0.5"]) == (
        "v", {"workspace_low": (0.3, -0.25, 0.025)}, {"execute": 1, "ensemble": 0.5})
    assert pick_cell.parse_variant(["default"]) == ("default", {}, {})
    assert pick_cell.parse_variant(["mppi", "planner=mppi"]) == ("mppi", {}, {"planner": "mppi"})
    assert pick_cell.parse_variant(["cem0", "planner=cem", "collision_weight=0"]) == (
        "cem0", {}, {"planner": "cem", "planner_settings": {"collision_weight": 0.0}})
    assert pick_cell.parse_variant(["cvar", "planner=cem", "futures=8", "alpha=0.25"]) == (
        "cvar", {}, {"planner": "cem", "planner_settings": {"futures": 8, "alpha": 0.25}})
    assert pick_cell.parse_variant(["ens", "planner=cem", "members=5", "disagreement=1"]) == (
        "ens", {}, {"planner": "cem", "members": 5, "planner_settings": {"disagreement_weight": 1.0}})
    assert pick_cell.parse_variant(["ac", "finetune=300", "bc=2"]) == (
        "ac", {}, {"finetune": {"finetune": 300, "bc_weight": 2.0}})
    assert pick_cell.parse_variant(["ac", "finetune=30", "anchor=chunk"]) == (
        "ac", {}, {"finetune": {"finetune": 30, "anchor": "chunk"}})
    assert pick_cell.policy_settings({"finetune": {"finetune": 300}, "execute": 2}) == {"execute": 2}


@pytest.mark.parametrize("item", ["speed=2", "execute", "max_objects=9", "planner=astar",
                                  "collision_weight=1", "futures=4", "members=3", "disagreement=1",
                                  "bc=1", "finetune=0", "finetune=10 bc=-1",
                                  "finetune=10 anchor=kl", "anchor=chunk"])
def test_a_bad_variant_is_refused_before_any_episode(item):
    with pytest.raises((SystemExit, ValueError)):
        pick_cell.parse_variant(["bad", *item.split()])


def test_an_ensemble_of_one_is_refused():
    with pytest.raises(SystemExit, match="members >= 2"):
        pick_cell.parse_variant(["bad", "planner=cem", "members=1"])
