"""Training pick-vla's ensemble on real demonstrations: every frame is embedded once by the version's
own encoder (as in its training), member j trains on its own bootstrap resample, and k < 1 is refused."""
import pytest
import torch

from dreamops.models.pick_vla import PickVLA
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.pick_config import PickModelConfig, PickTrainConfig
from dreamops.tasks.pick_ensemble import embed_demos, train_pick_members
from dreamops.tasks.train_pick import Demos, architecture


def _version(data):
    model_cfg = PickModelConfig(embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32,
                                horizon=4, execute=2, collision_head=True)
    demos = Demos.load(data, list(data.manifest["episode_id"]), model_cfg.horizon)
    torch.manual_seed(0)
    return PickVLA(architecture(model_cfg, ("pick", "up", "the"), demos.proprio[0].shape[1])).eval(), demos


def test_the_frames_are_embedded_as_the_version_embeds_its_training_windows(good_pick_dataset):
    data = open_dataset(good_pick_dataset.parent, str(good_pick_dataset))
    model, demos = _version(data)
    embeds = embed_demos(model, demos, batch=7)   # batches that split episodes
    assert [len(e) for e in embeds] == [len(a) for a in demos.actions]
    window = demos.batch(demos.windows(4)[:1], 4, model.tokenizer)
    with torch.no_grad():
        direct = model.embed_sequence(window)[0]
    e, s = demos.windows(4)[0]
    assert torch.allclose(embeds[e][s:s + 4], direct, atol=1e-5)


def test_members_train_on_their_own_resamples_and_differ(good_pick_dataset):
    data = open_dataset(good_pick_dataset.parent, str(good_pick_dataset))
    model, _ = _version(data)
    cfg = PickTrainConfig(batch_size=2, seq_len=4, log_every=1)
    logged = []
    members = train_pick_members(model, data, list(data.manifest["episode_id"]), cfg, k=2, steps=3,
                                 log=lambda metrics, step: logged.append(metrics), show_progress=False)
    assert len(members) == 2 and all(m.collision_head is not None for m in members)
    a, b = (m.state_dict()["rssm.gru.weight_ih"] for m in members)
    assert not torch.equal(a, b)
    assert any("ensemble/collision/bce" in m for m in logged) and all(torch.isfinite(torch.tensor(m["ensemble/wm/loss"]))
                                                                    for m in logged)
    with pytest.raises(ValueError, match="at least one member"):
        train_pick_members(model, data, list(data.manifest["episode_id"]), cfg, k=0)
