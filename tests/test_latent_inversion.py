"""Latent inversion (paper 001): DDIM steps, NFE, round trip, scores, resumable training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffad.device import seed_everything
from diffad.methods import Runtime, build_method, expand_method_grids, resolve_method
from diffad.methods.latent_inversion import LatentInversion, gaussian_nll, train_epsilon
from diffad.models.ddim import ddim_step, inversion_path, step_grid

TINY = {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
        "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 2,
        "batch_size": 4, "learning_rate": 1e-3}


def make(weights_root, tmp_path=None, **params) -> LatentInversion:
    runtime = Runtime(device=torch.device("cpu"), weights_root=weights_root, image_size=64,
                      cache_dir=tmp_path)
    return build_method(resolve_method("li", {**TINY, **params}), runtime)


def features(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth, correlated stand-ins for 192-channel 4 x 4 backbone features."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 192, 4, 4, generator=generator)
    return base + 0.3 * torch.randn(n, 192, 4, 4, generator=generator)


def test_step_grid_is_evenly_spaced_as_in_the_paper():
    assert step_grid(3, 1000) == [333, 666, 999]
    assert step_grid(2, 1000) == [500, 999]
    assert step_grid(1000, 1000) == list(range(1000))
    assert len(set(step_grid(100, 1000))) == 100
    path = inversion_path(3, torch.linspace(0.99, 0.01, 1000))
    assert [t for t, _ in path] == [0, 333, 666, 999] and path[0][1] == 1.0


def test_ddim_step_matches_diffusers_ddim_scheduler():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                              clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8,
                                                                     generator=generator)
    t = int(scheduler.timesteps[1])
    expected = scheduler.step(eps, t, x, eta=0.0).prev_sample
    alphas = scheduler.alphas_cumprod
    ours = ddim_step(x, eps, float(alphas[t]), float(alphas[t - 100]))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_inversion_costs_exactly_s_unet_evaluations(weights_root):
    method = make(weights_root)
    calls = []
    method.unet.register_forward_hook(lambda *args: calls.append(1))
    for steps in (2, 3, 5):
        calls.clear()
        method.params.steps = steps
        method.predict_features(features(3), 64)
        assert len(calls) == steps == method.nfe


def test_reconstruction_costs_the_steps_after_its_start(weights_root):
    method = make(weights_root, mode="reconstruction", steps=10, start_percent=40)
    calls = []
    method.unet.register_forward_hook(lambda *args: calls.append(1))
    prediction = method.predict_features(features(2), 64, torch.Generator().manual_seed(0))
    assert len(calls) == 4 == method.nfe
    assert prediction.maps.shape == (2, 64, 64) and prediction.scores.shape == (2,)


def test_scores_and_maps_have_the_contracted_shapes(weights_root):
    method = make(weights_root, steps=2)
    prediction = method.predict_features(features(3), 64)
    assert prediction.maps.shape == (3, 64, 64)
    assert set(prediction.detectors) == {"nll", "norm"}
    assert all(v.shape == (3,) for v in prediction.detectors.values())
    # The image score of `norm` is the spread of the map before upsampling.
    assert (prediction.detectors["norm"] >= 0).all()
    zeros = torch.zeros(2, 192, 4, 4)
    expected = 0.5 * 192 * 16 * np.log(2 * np.pi)
    np.testing.assert_allclose(gaussian_nll(zeros).numpy(), [expected, expected], rtol=1e-6)


def test_combined_scores_normalize_by_the_test_range_or_the_train_statistics(weights_root):
    method = make(weights_root, score="combined")
    detectors = {"nll": np.array([10.0, 20.0, 30.0]), "norm": np.array([1.0, 3.0, 2.0])}
    np.testing.assert_allclose(method.combine_scores(np.zeros(3), detectors), [0.0, 1.5, 1.5])
    method.params.score = "combined_train"
    method.train_score_stats = (20.0, 10.0, 2.0, 1.0)
    np.testing.assert_allclose(method.combine_scores(np.zeros(3), detectors), [-2.0, 1.0, 1.0])


def test_inversion_then_sampling_returns_x0_on_a_trained_toy_model(weights_root):
    # Data on a 3-dimensional subspace: a distribution the tiny UNet learns in seconds.
    seed_everything(0)
    method = make(weights_root, epochs=100, batch_size=8)
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 192, 4, 4, generator=generator)
    data = torch.einsum("nk,kchw->nchw", torch.randn(32, 3, generator=generator), basis)
    data = data + 0.05 * torch.randn(data.shape, generator=generator)
    x0 = (data - data.mean((0, 2, 3), keepdim=True)) / data.std((0, 2, 3), keepdim=True)
    train_epsilon(method.unet, method.scheduler, x0, method.params, method.runtime, None)
    xt = method.invert(x0[:4], steps=100)
    assert (xt - x0[:4]).norm() > 0.5 * x0[:4].norm()  # it really moved away from x0
    back = method.sample(xt, steps=100)
    error = (back - x0[:4]).norm() / x0[:4].norm()
    assert error < 0.1, float(error)


def test_resumed_training_ends_with_the_same_weights(weights_root, tmp_path):
    data = features(8)

    def fresh():
        seed_everything(0)
        return make(weights_root, epochs=4, checkpoint_every=1)

    reference = fresh()
    train_epsilon(reference.unet, reference.scheduler, data, reference.params,
                  reference.runtime, tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill_after_two(epoch):
        if epoch == 2:
            raise Killed

    interrupted = fresh()
    (tmp_path / "resumed").mkdir()
    with pytest.raises(Killed):
        train_epsilon(interrupted.unet, interrupted.scheduler, data, interrupted.params,
                      interrupted.runtime, tmp_path / "resumed", kill_after_two)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    resumed = fresh()  # a new process: same init, then the checkpoint takes over
    loss = train_epsilon(resumed.unet, resumed.scheduler, data, resumed.params,
                         resumed.runtime, tmp_path / "resumed")
    assert len(loss) == 4 * 2  # every step of every epoch, the first two from the checkpoint
    for (name, a), (_, b) in zip(reference.unet.state_dict().items(),
                                 resumed.unet.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()


def test_nan_loss_stops_training_with_a_message(weights_root):
    from diffad.errors import TrainingError

    method = make(weights_root)
    data = features(4)
    data[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingError, match="loss is nan"):
        train_epsilon(method.unet, method.scheduler, data, method.params, method.runtime, None)


def test_fit_save_load_and_feature_cache(weights_root, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    method = make(weights_root, tmp_path / "cache")
    loss = method.fit(paths)
    assert list(loss.columns) == ["step", "loss"] and len(loss) == 2
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 1
    method.save(tmp_path)
    again = make(weights_root, tmp_path / "cache")
    again.load(tmp_path)
    first = [p.scores for p, _ in method.score_files(paths, 2, paths)]
    second = [p.scores for p, _ in again.score_files(paths, 2, paths)]
    np.testing.assert_allclose(np.concatenate(first), np.concatenate(second), rtol=1e-5)


def test_grid_leaves_out_reconstructions_that_start_before_the_first_step():
    grid = expand_method_grids({"recon": {
        "name": "r_s{steps}_p{start_percent}",
        "base": {"kind": "latent_inversion", "mode": "reconstruction"},
        "vary": {"steps": [3, 5, 10], "start_percent": [10, 20, 40]},
    }})
    assert "r_s3_p10" not in grid and "r_s3_p20" not in grid and "r_s5_p10" not in grid
    assert {"r_s3_p40", "r_s5_p20", "r_s10_p10"} <= set(grid)
    assert len(grid) == 6


def test_bad_choice_names_the_key():
    from diffad.errors import ConfigError

    with pytest.raises(ConfigError, match=r"methods\.li\.score: 'best' is not one of"):
        resolve_method("li", {"kind": "latent_inversion", "score": "best"})
