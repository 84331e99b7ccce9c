"""encode: a round whose V did not move encodes only its new episodes, and gets the same bits."""
from __future__ import annotations

import torch

from dreamops.models.bundle import module_hash
from dreamops.models.vae import VAE
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.encode import encode


def _counted(vae: VAE) -> list[int]:
    """Frames V encodes from now on, counted as they pass (the real module still does the work)."""
    frames: list[int] = []
    real = vae.encode_params

    def counting(x):
        frames.append(len(x))
        return real(x)

    vae.encode_params = counting
    return frames


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all((a[e][k] == b[e][k]).all() for e in a for k in ("mu", "logvar", "actions"))


def test_known_latents_of_the_same_v_are_reused_bit_for_bit(good_dataset):
    data = open_dataset(good_dataset.parent, str(good_dataset))
    torch.manual_seed(0)
    vae = VAE()
    fresh = encode(vae, data, use_cache=False)
    ids = list(data.manifest["episode_id"])
    old, new = ids[: len(ids) // 2], ids[len(ids) // 2:]
    frames = _counted(vae)
    again = encode(vae, data, use_cache=False, known=(module_hash(vae), {e: fresh[e] for e in old}))
    assert _same(again, fresh) and list(again) == ids  # the manifest's order, as a full encoding
    assert sum(frames) == sum(len(data.load(e)["obs"]) for e in new)  # only the episodes it did not know


def test_latents_of_another_v_are_not_reused(good_dataset):
    data = open_dataset(good_dataset.parent, str(good_dataset))
    torch.manual_seed(0)
    before = VAE()
    old = encode(before, data, use_cache=False)
    torch.manual_seed(1)
    after = VAE()  # a fine-tuned V: other weights
    frames = _counted(after)
    latents = encode(after, data, use_cache=False, known=(module_hash(before), old))
    assert sum(frames) == data.n_frames
    reference = VAE()
    reference.load_state_dict(after.state_dict())
    assert _same(latents, encode(reference, data, use_cache=False)) and not _same(latents, old)
