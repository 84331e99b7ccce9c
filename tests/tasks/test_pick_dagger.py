"""DAgger rounds for pick-vla: the policy's own episodes, each chunk query labelled by the expert,
stored beside the demonstrations, and trained on through the labels (not the executed actions)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamops.tasks.dataset import merge
from dreamops.tasks.evaluate_pick import PickPolicyFactory
from dreamops.tasks.pick_config import PickModelConfig, PickTrainConfig
from dreamops.tasks.pick_dagger import DaggerConfig, collect_dagger_round, dagger_jobs
from dreamops.tasks.pick_data import PickDataConfig, collect_demos
from dreamops.tasks.train_pick import Demos, train_pick_vla

DATA = PickDataConfig(episodes=3, seed=0, max_steps=24)
MODEL = PickModelConfig(embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=64, flow_steps=2)
TRAIN = PickTrainConfig(steps=2, batch_size=2, frame_batch_size=4, seq_len=4, warmup_steps=1, log_every=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("dagger-store")


@pytest.fixture(scope="module")
def trained(store):
    demos = collect_demos(DATA, store, workers=1, show_progress=False)
    ids = list(demos.manifest["episode_id"])
    model, _ = train_pick_vla(demos, ids[:2], ids[2:], TRAIN, MODEL, show_progress=False)
    return demos, model, PickPolicyFactory.from_model(model)


def _round(store, policy, beta: float, episodes: int = 2, label_every_step: bool = False):
    cfg = DaggerConfig(episodes_per_round=episodes, beta=beta, seed=300_000, label_every_step=label_every_step)
    return collect_dagger_round(DATA, cfg, 1, policy, store, workers=1, show_progress=False)


def test_every_chunk_query_is_labelled_by_the_expert_and_the_policy_drives(trained, store):
    _, model, model_bytes = trained
    rnd = _round(store, model_bytes, beta=0.0)
    assert list(rnd.manifest["episode_id"]) == ["r01_ep_000000", "r01_ep_000001"]
    assert list(rnd.manifest["seed"]) == [300_000, 300_001] and set(rnd.manifest["round"]) == {1}
    for _, ep in rnd.iter_episodes():
        t_len = len(ep["actions"])
        assert ep["label_chunks"].shape == (t_len, MODEL.horizon, 4) and ep["obs"].shape == (t_len, 64, 64, 3)
        queries = np.arange(t_len) % MODEL.execute == 0   # the policy asks every `execute` steps
        np.testing.assert_array_equal(ep["labelled"], queries)
        assert np.all(ep["label_chunks"][~queries] == 0) and np.all(np.abs(ep["label_chunks"][queries]).sum(-1) > 0)
        # the executed actions are the policy's, not the expert's (beta 0): the world model learns
        # what really happened
        assert not np.allclose(ep["actions"][queries], ep["label_chunks"][queries][:, 0])
    assert rnd.manifest["expert_chunks"].sum() == 0


def test_label_every_step_labels_the_states_between_queries_and_keeps_the_same_episode(trained, store):
    _, _, model_bytes = trained
    sparse, dense = _round(store, model_bytes, beta=0.0, episodes=1), _round(store, model_bytes, beta=0.0, episodes=1,
                                                                             label_every_step=True)
    assert sparse.hash != dense.hash   # a different spec: not served from the sparse round's cache
    (_, a), = sparse.iter_episodes()
    (_, b), = dense.iter_episodes()
    assert b["labelled"].all() and np.all(np.abs(b["label_chunks"]).sum(-1) > 0)
    # labelling is a what-if rollout that puts the cell back: the policy's episode is the same one
    # (to float rounding: the restored physics state is not bit-exact, and the expert's what-if
    # rollouts amplify it to ~1e-4)
    np.testing.assert_allclose(a["actions"], b["actions"], atol=1e-5)
    np.testing.assert_allclose(a["label_chunks"][a["labelled"]], b["label_chunks"][a["labelled"]], atol=1e-3)


def test_with_beta_one_the_expert_executes_its_labels_and_picks(trained, store):
    _, _, model_bytes = trained
    rnd = _round(store, model_bytes, beta=1.0, episodes=1)
    (_, ep), = rnd.iter_episodes()
    queries = np.flatnonzero(ep["labelled"])
    for q in queries:   # each executed stretch is the first `execute` actions of the label
        n = min(MODEL.execute, len(ep["actions"]) - q)
        np.testing.assert_allclose(ep["actions"][q:q + n], ep["label_chunks"][q, :n])
    assert bool(rnd.manifest["success"].iloc[0]) and rnd.manifest["expert_chunks"].iloc[0] == len(queries)


def test_training_uses_the_labels_at_labelled_states_and_a_warm_start_keeps_its_inputs(trained, store):
    demos, model, model_bytes = trained
    rnd = _round(store, model_bytes, beta=0.0)
    merged = merge([demos, rnd], store, {"rounds": [demos.hash, rnd.hash]})
    ids = list(rnd.manifest["episode_id"])
    loaded = Demos.load(merged, ids, MODEL.horizon)
    (_, ep), _ = list(rnd.iter_episodes())
    np.testing.assert_array_equal(loaded.chunks[0].numpy(), ep["label_chunks"])
    frames = loaded.frame_index()
    assert all(loaded.labelled[e][t] for e, t in frames) and len(frames) == sum(m.sum() for m in loaded.labelled)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, report = train_pick_vla(merged, list(demos.manifest["episode_id"])[:2] + ids,
                                   list(demos.manifest["episode_id"])[2:], TRAIN, MODEL, show_progress=False,
                                   init=model)
    assert tuned.tokenizer.vocab == model.tokenizer.vocab
    assert torch.equal(tuned.encoder.proprio_mean, before["encoder.proprio_mean"])
    assert report["train/labelled_frames"] == len(frames) + sum(len(a) for a in Demos.load(
        demos, list(demos.manifest["episode_id"])[:2], MODEL.horizon).actions)
    assert torch.equal(model.state_dict()["head.context.0.weight"], before["head.context.0.weight"])  # init untouched


def test_bad_dagger_values_are_named():
    with pytest.raises(ValueError, match="dagger.beta"):
        DaggerConfig(beta=1.5).validate()
    with pytest.raises(ValueError, match="dagger.episodes_per_round"):
        DaggerConfig(episodes_per_round=0).validate()


def test_a_round_is_driven_by_the_policy_alone(trained, store):
    _, model, _ = trained
    with pytest.raises(ValueError, match="no planner"):
        _round(store, PickPolicyFactory.from_model(model, planner={}), beta=0.0)


def test_the_round_jobs_carry_the_labelling_options():
    cfg = DaggerConfig(episodes_per_round=3, seed=300_000, label_every_step=True, retreat_first=True)
    jobs = dagger_jobs(PickDataConfig(), cfg, round_index=2)
    assert [j.seed for j in jobs] == [300_003, 300_004, 300_005]
    assert all(j.label_every_step and j.retreat_first for j in jobs)


def test_a_collision_head_trains_on_the_per_step_collisions_of_demonstrations_and_rounds(trained, store):
    import dataclasses

    demos, _, model_bytes = trained
    rnd = _round(store, model_bytes, beta=0.0)
    for part in (demos, rnd):   # the per-step flags agree with the episode's
        for (_, ep), (_, row) in zip(part.iter_episodes(), part.manifest.iterrows()):
            assert ep["collisions"].shape == ep["rewards"].shape and ep["collisions"].any() == row["collision"]
    merged = merge([demos, rnd], store, {"rounds": [demos.hash, rnd.hash]})
    ids = list(merged.manifest["episode_id"])
    logged: dict = {}
    model, _ = train_pick_vla(merged, ids[:-1], ids[-1:], TRAIN, dataclasses.replace(MODEL, collision_head=True),
                              log=lambda metrics, step: logged.update(metrics), show_progress=False)
    assert model.arch.collision_head and model.collision_head is not None
    assert "pick/collision/bce" in logged and 0.0 <= logged["pick/collision/observed"] <= 1.0
    assert "collision_head" in model.component_hashes()
