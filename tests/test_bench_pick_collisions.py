"""bench/pick_collisions.py: a first collision is placed by where the gripper was."""
from tests.bench import bench_module

pick_collisions = bench_module("pick_collisions")


def _row(grip_closed, to_target, to_other):
    return {"grip_closed": grip_closed, "xy_to_target_cm": to_target, "xy_to_nearest_other_cm": to_other}


def test_a_first_collision_is_placed_by_where_the_gripper_was():
    assert pick_collisions.where(_row(True, 19.0, 0.8)) == "closed on another object"
    assert pick_collisions.where(_row(False, 9.8, 6.7)) == "descending by another object"
    assert pick_collisions.where(_row(True, 0.4, 9.0)) == "at the named object"
    assert pick_collisions.where(_row(False, 12.1, 11.9)) == "elsewhere"
    assert pick_collisions.where(_row(True, 5.4, 9.9)) == "elsewhere"
