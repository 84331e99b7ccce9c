"""The agent-family contract, run over every family: exact save/load round trips, one training step
reduces the loss on a fixed batch, inference shapes and ranges, and a registry round trip (log the
pyfunc, register, load by `models:/` URI, same outputs). A new family adds one adapter here; the
on-robot exports (tests/models/test_export.py) use the same adapters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamops.families import FAMILIES as REGISTERED


class CarRacingVMC:
    name = "carracing-vmc"

    def make(self):
        from dreamops.models.bundle import Architecture, VMCBundle

        torch.manual_seed(0)
        bundle = VMCBundle.create(Architecture(latent_dim=8, hidden_dim=32, n_gaussians=3, action_repeat=1))
        bundle.controller.set_flat(torch.randn(bundle.controller.n_params) * 0.5)
        return bundle

    def batch(self):
        g = torch.Generator().manual_seed(1)
        frames = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8, generator=g)
        z = torch.randn(2, 6, 8, generator=g)
        return {"frames": frames, "z": z[:, :-1], "z_next": z[:, 1:], "a": torch.rand(2, 5, 3, generator=g),
                "reward": torch.randn(2, 5, generator=g), "done": torch.zeros(2, 5)}

    def parameters(self, model):
        return [*model.vae.parameters(), *model.mdnrnn.parameters()]

    def loss(self, model, b):
        from dreamops.models.vae import VAE

        torch.manual_seed(2)   # the VAE's reparameterisation noise
        vae_loss, _ = model.vae(VAE.to_input(b["frames"]))
        mdn_loss, _ = model.mdnrnn(b["z"], b["a"], b["z_next"], b["reward"], b["done"])
        return vae_loss + mdn_loss

    def save_load(self, model, path):
        from dreamops.models.bundle import VMCBundle

        return VMCBundle.load(model.save(path / "vmc_bundle.pt"))

    def observation(self, seed):
        return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def act(self, model, observations):
        policy = model.policy()
        return np.stack([policy.act(o) for o in observations])

    def check_actions(self, actions):
        assert actions.shape[1:] == (3,)
        assert np.all(np.abs(actions[:, 0]) <= 1) and np.all((actions[:, 1:] >= 0) & (actions[:, 1:] <= 1))

    def pyfunc(self, model, path):
        from dreamops.registry import store
        from dreamops.registry.pyfunc import VMCPyfuncModel

        frames = np.stack([self.observation(s) for s in range(3)])
        return (VMCPyfuncModel(), {"bundle": str(model.save(path / "vmc_bundle.pt"))}, store.frame_signature(),
                frames, {"reset": True}, self.act(model, frames))

    def robot_graph(self, model):
        from dreamops.models.vmc import VMCStep, step_graph

        return step_graph(VMCStep(model.vae, model.mdnrnn, model.controller))

    def package(self, model, out_dir):
        from dreamops.tasks.package import package_version

        return package_version(model, "{}\n", {}, np.zeros((4, 8), np.float32), out_dir)


class PickVLA:
    name = "pick-vla"

    def make(self):
        from dreamops.models.pick_vla import PickArchitecture, PickVLA as Model

        torch.manual_seed(0)
        return Model(PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32,
                                      stoch=4, classes=4, head_hidden=64)).eval()

    def batch(self):
        g = torch.Generator().manual_seed(1)
        b, t, n = 2, 4, 6

        def obs(*lead):
            return {"rgb": torch.randint(0, 256, (*lead, 64, 64, 3), dtype=torch.uint8, generator=g),
                    "depth": 0.6 + 0.6 * torch.rand(*lead, 64, 64, 1, generator=g),
                    "proprio": torch.randn(*lead, 21, generator=g)}
        tokens = torch.tensor([[2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0]])
        windows = {**obs(b, t), "tokens": tokens.repeat(b, 1), "actions": torch.rand(b, t, 4, generator=g) * 2 - 1,
                   "success": torch.zeros(b, t), "held": (torch.rand(b, t, generator=g) > 0.5).float()}
        frames = {**obs(n), "tokens": tokens.repeat(n, 1), "chunks": torch.rand(n, 16, 4, generator=g) * 2 - 1,
                  "target_uv": torch.rand(n, 2, generator=g) * 2 - 1}
        return {"windows": windows, "frames": frames, "noise": torch.randn(n, 16, 4, generator=g),
                "t": torch.rand(n, generator=g)}

    def parameters(self, model):
        return list(model.parameters())

    def loss(self, model, b):
        torch.manual_seed(2)   # the RSSM's latent samples
        loss, _ = model(b["windows"], frames=b["frames"], noise=b["noise"], t=b["t"])
        return loss

    def save_load(self, model, path):
        from dreamops.models.pick_vla import PickVLA as Model

        return Model.load(model.save(path / "pick_vla.pt"))

    def observation(self, seed):
        rng = np.random.default_rng(seed)
        return {"rgb": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                "depth": rng.uniform(0.6, 1.2, (64, 64, 1)).astype(np.float32),
                "proprio": rng.normal(size=21).astype(np.float32)}

    def act(self, model, observations):
        from dreamops.models.pick_vla import PickVLAPolicy

        policy = PickVLAPolicy(model)
        policy.reset("pick up the red box", seed=0)
        actions = np.stack([policy.act(o) for o in observations])
        assert len(policy.latencies_ms) == -(-len(observations) // model.arch.execute)  # re-plans every 4 steps
        return actions

    def check_actions(self, actions):
        assert actions.shape[1:] == (4,) and actions.dtype == np.float32 and np.all(np.abs(actions) <= 1)

    def pyfunc(self, model, path):
        from dreamops.registry import store
        from dreamops.registry.pyfunc import PickVLAPyfuncModel

        obs = [self.observation(s) for s in range(3)]
        inputs = {k: np.stack([o[k] for o in obs]) for k in ("rgb", "depth", "proprio")}
        expected = model.generate(inputs["rgb"], inputs["depth"], inputs["proprio"], ["pick up the red box"] * 3,
                                  torch.Generator().manual_seed(5))
        return (PickVLAPyfuncModel(), {"bundle": str(model.save(path / "pick_vla.pt"))}, store.pick_signature(),
                inputs, {"instruction": "pick up the red box", "seed": 5}, expected)

    def robot_graph(self, model):
        from dreamops.models.pick_vla import chunk_graph

        return chunk_graph(model)

    def package(self, model, out_dir):
        from dreamops.tasks.package import package_pick_version

        return package_pick_version(model, "{}\n", {}, np.zeros((4, model.encoder.scene_dim), np.float32), out_dir)


FAMILIES = {f.name: f for f in (CarRacingVMC(), PickVLA())}


def test_every_agent_family_has_a_contract_adapter():
    assert set(FAMILIES) == set(REGISTERED)


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


def test_save_load_round_trip_is_exact(family, tmp_path):
    model = family.make()
    loaded = family.save_load(model, tmp_path)
    assert loaded.component_hashes() == model.component_hashes()
    observations = [family.observation(s) for s in range(6)]
    torch.manual_seed(3)
    a = family.act(model, observations)
    torch.manual_seed(3)
    assert np.array_equal(a, family.act(loaded, observations))


def test_one_training_step_reduces_the_loss_on_a_fixed_batch(family):
    model = family.make()
    batch = family.batch()
    opt = torch.optim.Adam(family.parameters(model), lr=1e-3)
    before = family.loss(model, batch)
    opt.zero_grad()
    before.backward()
    opt.step()
    assert float(family.loss(model, batch)) < float(before)


def test_inference_shapes_and_ranges(family):
    model = family.make()
    family.check_actions(family.act(model, [family.observation(s) for s in range(9)]))


def test_registry_round_trip(family, dreamops_home, tmp_path):
    import mlflow

    from dreamops.registry import store
    from dreamops.settings import get_settings

    store.configure(get_settings())
    model = family.make()
    python_model, artifacts, signature, inputs, params, expected = family.pyfunc(model, tmp_path)
    with mlflow.start_run():
        registered = store.register_pyfunc(family.name, python_model, artifacts, signature,
                                           tags={"weights.example": "x"}, pip_requirements=["torch"])
    loaded = mlflow.pyfunc.load_model(registered.uri)
    out = loaded.predict(inputs, params=params)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert str(store.get_version(family.name, "latest").version) == registered.version


def test_every_pyfunc_parameter_is_in_the_signature(family, dreamops_home, tmp_path):
    """MLflow drops (with a warning) params its signature lacks: each one the family's pyfunc reads
    must be declared, and reach predict when loaded through `models:/`."""
    import mlflow

    from dreamops.registry import store
    from dreamops.settings import get_settings

    store.configure(get_settings())
    python_model, artifacts, signature, inputs, params, _ = family.pyfunc(family.make(), tmp_path)
    assert signature.params is not None and set(params) <= {p.name for p in signature.params.params}
    with mlflow.start_run():
        registered = store.register_pyfunc(family.name, python_model, artifacts, signature, tags={},
                                           pip_requirements=["torch"])
    loaded = mlflow.pyfunc.load_model(f"models:/{family.name}/{registered.version}")
    assert set(params) <= {p.name for p in loaded.metadata.get_params_schema().params}


def test_vmc_reset_restores_the_first_calls_actions(dreamops_home, tmp_path):
    """M's memory carries over between calls; params={"reset": True} through `models:/` clears it."""
    import mlflow

    from dreamops.registry import store
    from dreamops.settings import get_settings

    store.configure(get_settings())
    family = FAMILIES["carracing-vmc"]
    python_model, artifacts, signature, frames, _, _ = family.pyfunc(family.make(), tmp_path)
    with mlflow.start_run():
        registered = store.register_pyfunc(family.name, python_model, artifacts, signature, tags={},
                                           pip_requirements=["torch"])
    loaded = mlflow.pyfunc.load_model(f"models:/{family.name}/{registered.version}")
    first = loaded.predict(frames, params={"reset": True})
    carried = loaded.predict(frames)  # same frames, memory of the first call
    assert not np.allclose(first, carried)
    np.testing.assert_array_equal(loaded.predict(frames, params={"reset": True}), first)


def test_load_bundle_checks_every_component_against_its_registered_hash(family, dreamops_home, tmp_path):
    """store.load_bundle reads any family's weights file (dreamops.families names it) and refuses
    weights that no longer hash to the `weights.*` tags written at registration."""
    import mlflow

    from dreamops.registry import store
    from dreamops.registry.errors import VersionIntegrityError
    from dreamops.settings import get_settings

    store.configure(get_settings())
    model = family.make()
    python_model, artifacts, signature, *_ = family.pyfunc(model, tmp_path)
    hashes = model.component_hashes()
    tampered = {**hashes, next(iter(hashes)): "0" * 64}
    with mlflow.start_run():
        good, bad = (store.register_pyfunc(family.name, python_model, artifacts, signature, pip_requirements=["torch"],
                                           tags={f"weights.{k}": v for k, v in tags.items()})
                     for tags in (hashes, tampered))
    loaded = store.load_bundle(family.name, good.version)
    assert type(loaded.bundle) is type(model) and loaded.bundle.component_hashes() == hashes
    with pytest.raises(VersionIntegrityError, match=f"{next(iter(hashes))} weights hash to"):
        store.load_bundle(family.name, bad.version)
