import numpy as np
import torch

from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.models.vmc import VMCStep, export_torchscript


def _bundle():
    torch.manual_seed(0)
    b = VMCBundle.create(Architecture())
    b.controller.set_flat(torch.randn(867))
    return b


def test_save_load_round_trip_is_exact(tmp_path):
    b = _bundle()
    loaded = VMCBundle.load(b.save(tmp_path / "b.pt"))
    for name in ("vae", "mdnrnn", "controller"):
        sa, sb = getattr(b, name).state_dict(), getattr(loaded, name).state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.component_hashes() == loaded.component_hashes()
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    p1, p2 = b.policy(), loaded.policy()
    for f in frames:
        assert np.array_equal(p1.act(f), p2.act(f))


def test_torchscript_step_equals_eager(tmp_path):
    b = _bundle()
    step = VMCStep(b.vae, b.mdnrnn, b.controller).eval()
    scripted = torch.jit.load(str(export_torchscript(step, tmp_path / "s.pt")))
    frame = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    h, c = torch.randn(1, 256), torch.randn(1, 256)
    with torch.no_grad():
        for x, y in zip(step(frame, h, c), scripted(frame, h, c)):
            torch.testing.assert_close(x, y)


def test_policy_memory_carries_between_steps():
    b = _bundle()
    p = b.policy()
    frame = np.full((64, 64, 3), 100, np.uint8)
    first = p.act(frame)
    second = p.act(frame)  # same frame, different memory
    assert not np.array_equal(first, second)
    p.reset(0)
    assert np.array_equal(p.act(frame), first)


def test_policy_repeats_its_action_between_decisions():
    torch.manual_seed(0)
    b = VMCBundle.create(Architecture(action_repeat=4))
    b.controller.set_flat(torch.randn(867))
    p = b.policy()
    rng = np.random.default_rng(0)
    actions = [p.act(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(8)]
    assert all(np.array_equal(actions[0], a) for a in actions[1:4])
    assert not np.array_equal(actions[0], actions[4])
    assert np.isnan(p.diagnostics()["residual"])  # frame 8 is not a decision frame
