"""bench/planners_carracing.py: its actor-critic settings are checked before any training."""
import pytest

from tests.bench import bench_module

planners = bench_module("planners_carracing")


def test_actor_critic_settings_parse_into_the_config():
    cfg = planners.actor_critic_config(["updates=1000", "actor_lr=3e-4", "horizon=20"])
    assert (cfg.updates, cfg.actor_lr, cfg.horizon) == (1000, 3e-4, 20)


@pytest.mark.parametrize("item, message", [("steps=5", "KEY one of"), ("updates", "KEY=VALUE"),
                                           ("updates=many", "is not a int"), ("lam=2", "lam")])
def test_a_bad_setting_stops_the_bench_naming_it(item, message):
    with pytest.raises(SystemExit, match=message):
        planners.actor_critic_config([item])
