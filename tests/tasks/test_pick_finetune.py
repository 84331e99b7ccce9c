"""Fine-tuning pick-vla's policy in its world model: the reward is the planners' objective step by
step, the fine-tune raises what the policy's chunks score in the dream, and nothing but the head moves."""
import pytest
import torch

from dreamops.models.pick_vla import PickVLA, initial_state
from dreamops.models.planners import imagined_score
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.pick_config import PickModelConfig
from dreamops.tasks.pick_ensemble import embed_demos
from dreamops.tasks.pick_finetune import (PickFinetuneConfig, chunk_rewards, finetune_pick_policy,
                                          imagine_differentiably)
from dreamops.tasks.train_pick import Demos, architecture

MODEL = PickModelConfig(embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32, horizon=4,
                        execute=2, collision_head=True)


def _version(proprio_dim: int = 21) -> PickVLA:
    torch.manual_seed(0)
    model = PickVLA(architecture(MODEL, ("pick", "up", "the"), proprio_dim)).eval()
    with torch.no_grad():   # heads that answer differently to different chunks
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def test_a_chunks_rewards_sum_to_the_planners_imagined_score():
    torch.set_num_threads(1)
    model = _version()
    cond = torch.randn(1, MODEL.embed_dim)
    chunks = torch.rand(6, MODEL.horizon, 4) * 2 - 1
    with torch.no_grad():
        feats = imagine_differentiably(model, initial_state(model, cond, 6), chunks)
        for weights in ((4.0, 4.0), (1.0, 0.0), (0.0, 2.5)):
            summed = chunk_rewards(model, feats, *weights).sum(1)
            torch.testing.assert_close(summed, imagined_score(model, cond, chunks, *weights), atol=1e-5, rtol=0)


def test_fine_tuning_raises_the_policys_imagined_score_and_moves_only_the_head(good_pick_dataset):
    torch.set_num_threads(1)
    data = open_dataset(good_pick_dataset.parent, str(good_pick_dataset))
    demos = Demos.load(data, list(data.manifest["episode_id"]), MODEL.horizon)
    model = _version(demos.proprio[0].shape[1])
    original = {k: v.clone() for k, v in model.state_dict().items()}
    logged = []
    tuned, report = finetune_pick_policy(model, embed_demos(model, demos), demos,
                                         PickFinetuneConfig(steps=40, batch_size=8, lr=3e-3, bc_weight=0.0),
                                         log=lambda metrics, step: logged.append(step), show_progress=False)
    assert report["finetune/imagined_after"] > report["finetune/imagined_before"] + 0.01, report
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())   # the version is untouched
    moved = {k for k, v in tuned.state_dict().items() if not torch.equal(v, original[k])}
    assert moved and all(k.startswith("head.") for k in moved)
    assert logged[-1] == 40 and isinstance(tuned, PickVLA)


def test_the_chunk_anchor_pulls_the_executed_chunks_to_the_labels(good_pick_dataset):
    """TD3+BC's behaviour term on the executed chunk: weighted far above the return, the fine-tune
    brings the chunks the policy executes nearer the expert's labels."""
    torch.set_num_threads(1)
    data = open_dataset(good_pick_dataset.parent, str(good_pick_dataset))
    demos = Demos.load(data, list(data.manifest["episode_id"]), MODEL.horizon)
    model = _version(demos.proprio[0].shape[1])
    _, report = finetune_pick_policy(model, embed_demos(model, demos), demos,
                                     PickFinetuneConfig(steps=40, batch_size=8, lr=3e-3, bc_weight=100.0, anchor="chunk"),
                                     show_progress=False)
    assert report["finetune/anchor_after"] < 0.95 * report["finetune/anchor_before"], report


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="anchor"):
        PickFinetuneConfig(anchor="kl")
    with pytest.raises(ValueError, match="discount"):
        PickFinetuneConfig(discount=0.0)
    with pytest.raises(ValueError, match="steps"):
        PickFinetuneConfig(steps=0)
