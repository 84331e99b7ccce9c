"""pick_grounding: rendered scenes with where the named object is, and the encoder's attention
trained and measured on them."""
import numpy as np
import torch

from dreamops.models.encoders import WordTokenizer
from dreamops.models.pick_vla import PickArchitecture, PickVLA
from dreamops.sim.pick import PickCell, project_to_image
from dreamops.tasks.pick_grounding import collect_scenes, grounding_accuracy, pretrain_grounding

SEEDS = [500_000, 500_001, 500_002, 500_003]


def test_a_scene_is_the_cells_first_frame_with_the_named_objects_image_position():
    scenes = collect_scenes("seen", SEEDS, workers=1, show_progress=False, chunk=3)
    assert scenes.seeds == SEEDS and scenes.rgb.shape == (4, 64, 64, 3) and scenes.depth.shape == (4, 64, 64, 1)
    env = PickCell(render=True)
    try:
        obs, _ = env.reset(seed=SEEDS[2])
        assert np.array_equal(obs["rgb"], scenes.rgb[2]) and env.instruction == scenes.instructions[2]
        named = project_to_image(env.object_position(env.target_index)[None], env.cfg)[0]
        assert np.allclose(scenes.target_uv[2], named, atol=1e-6) and scenes.target[2] == env.target_index
    finally:
        env.close()
    assert len(scenes.subset(2)) == 2 and scenes.subset(2).seeds == SEEDS[:2]


def test_rendered_scenes_are_cached_by_seeds_and_simulator_code(tmp_path, monkeypatch):
    from dreamops.tasks import pick_grounding

    first = collect_scenes("seen", SEEDS, workers=1, show_progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("scenes-seen-*.npz"))) == 1
    monkeypatch.setattr(pick_grounding, "map_jobs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rendered")))
    again = collect_scenes("seen", SEEDS, workers=1, show_progress=False, cache_dir=tmp_path)
    assert again.seeds == first.seeds and again.instructions == first.instructions
    assert np.array_equal(again.rgb, first.rgb) and np.array_equal(again.depth, first.depth)
    assert np.array_equal(again.target, first.target)
    assert all(np.array_equal(a, b) for a, b in zip(again.objects_uv, first.objects_uv))
    assert pick_grounding.scenes_key("seen", SEEDS) != pick_grounding.scenes_key("seen", SEEDS[:3])
    (next(tmp_path.glob("scenes-seen-*.npz"))).write_bytes(b"not a zip")   # unreadable: rendered again
    monkeypatch.undo()
    assert collect_scenes("seen", SEEDS, workers=1, show_progress=False, cache_dir=tmp_path).seeds == SEEDS


def test_pretraining_moves_the_attention_onto_the_named_object():
    scenes = collect_scenes("seen", SEEDS, workers=1, show_progress=False)
    torch.manual_seed(0)
    model = PickVLA(PickArchitecture(vocab=tuple(WordTokenizer.fit(scenes.instructions).vocab), embed_dim=32,
                                     text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32))
    before = grounding_accuracy(model.encoder, model.tokenizer, scenes)
    fit = pretrain_grounding(model.encoder, model.tokenizer, scenes, steps=80, batch_size=4, lr=3e-3)
    after = grounding_accuracy(model.encoder, model.tokenizer, scenes)
    assert after["accuracy"] == 1.0 and after["error_px_median"] < 2.0 < before["error_px_median"]
    assert fit["grounding/ce"] < 2.0 and after["scenes"] == 4.0


def test_training_keeps_the_rendered_scenes_in_every_step_and_pretrains_a_fresh_model_on_them(tmp_path):
    from dreamops.tasks.pick_config import PickModelConfig, PickTrainConfig
    from dreamops.tasks.pick_data import PickDataConfig, collect_demos
    from dreamops.tasks.pick_grounding import grounding_seeds
    from dreamops.tasks.train_pick import train_pick_vla

    demos = collect_demos(PickDataConfig(episodes=2, seed=0, max_steps=12), tmp_path, workers=1, show_progress=False)
    ids = list(demos.manifest["episode_id"])
    scenes = collect_scenes("seen", grounding_seeds(3), workers=1, show_progress=False)
    assert scenes.seeds == [500_000, 500_001, 500_002]
    model_cfg = PickModelConfig(embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32, flow_steps=2)

    def train(grounding, grounding_steps=0):
        logged: dict = {}
        cfg = PickTrainConfig(steps=2, batch_size=1, frame_batch_size=2, seq_len=4, warmup_steps=1, log_every=1,
                              grounding_scenes=3 if grounding else 0, grounding_batch_size=2,
                              grounding_steps=grounding_steps)
        model, report = train_pick_vla(demos, ids[:1], ids[1:], cfg, model_cfg, log=lambda m, step: logged.update(m),
                                       show_progress=False, grounding=scenes if grounding else None)
        return model, report, logged

    without, _, logged_without = train(False)
    with_scenes, report, logged = train(True)
    assert logged["pick/grounding/ce"] > 0 and report["train/grounding_scenes"] == 3.0
    assert "pick/grounding/ce" not in logged_without and "grounding/pretrain_scenes" not in logged
    # the scenes' loss reached the image path: same seed and draws otherwise, other weights
    visual = [n for n, _ in with_scenes.encoder.named_parameters() if not n.startswith(("proprio", "head"))]
    a, b = dict(with_scenes.encoder.named_parameters()), dict(without.encoder.named_parameters())
    assert any(not torch.equal(a[n], b[n]) for n in visual)
    _, _, logged = train(True, grounding_steps=2)
    assert logged["grounding/pretrain_scenes"] == 3.0 and logged["grounding/ce"] > 0
