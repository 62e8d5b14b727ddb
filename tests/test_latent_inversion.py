"""Latent inversion (paper 001): DDIM steps, NFE, round trip, detectors, score tier, folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffad.device import seed_everything
from diffad.errors import ConfigError
from diffad.methods import build_model, load_model, params_of, resolve_method
from diffad.methods.latent_inversion import LatentInversion
from diffad.methods.latent_inversion.model import gaussian_nll
from diffad.models.ddim import ddim_step, inversion_path, step_grid
from diffad.plan import expand_method_grids
from diffad.runtime import Runtime
from diffad.scoring.outputs import Outputs, score_table, write_maps

TINY = {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
        "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 2,
        "batch_size": 4, "learning_rate": 1e-3}


def make(weights_root, tmp_path=None, **params):
    runtime = Runtime(device=torch.device("cpu"), weights_root=weights_root, image_size=64,
                      cache_dir=tmp_path)
    return build_model(resolve_method("li", {**TINY, **params}), runtime)


def with_params(model, **changes):
    model.params = model.params.model_copy(update=changes)
    return model


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
    model = make(weights_root)
    calls = []
    model.unet.register_forward_hook(lambda *args: calls.append(1))
    for steps in (2, 3, 5):
        calls.clear()
        with_params(model, steps=steps).predict_features(features(3), 64)
        assert len(calls) == steps == LatentInversion.nfe(model.params)


def test_reconstruction_costs_the_steps_after_its_start(weights_root):
    model = make(weights_root, mode="reconstruction", steps=10, start_percent=40)
    calls = []
    model.unet.register_forward_hook(lambda *args: calls.append(1))
    prediction = model.predict_features(features(2), 64)
    assert len(calls) == 4 == LatentInversion.nfe(model.params)
    assert prediction.maps["error"].shape == (2, 64, 64)
    assert prediction.scores["error"].shape == (2,)


def test_inversion_stores_every_detector(weights_root):
    prediction = make(weights_root, steps=2).predict_features(features(3), 64)
    assert set(prediction.scores) == {"nll", "norm"} and set(prediction.maps) == {"norm"}
    assert prediction.maps["norm"].shape == (3, 64, 64)
    assert all(v.shape == (3,) for v in prediction.scores.values())
    # The image score of `norm` is the spread of the map before upsampling.
    assert (prediction.scores["norm"] >= 0).all()
    zeros = torch.zeros(2, 192, 4, 4)
    expected = 0.5 * 192 * 16 * np.log(2 * np.pi)
    np.testing.assert_allclose(gaussian_nll(zeros).numpy(), [expected, expected], rtol=1e-6)


def outputs_with(tmp_path, nll, norm, train_nll=None, train_norm=None) -> Outputs:
    rows = pd.DataFrame({"image_path": [f"{i}.png" for i in range(len(nll))],
                         "category": "c", "defect_type": "good", "label": 0, "mask_path": None})
    write_maps({"norm": np.zeros((len(nll), 4, 4))}, tmp_path / "maps.safetensors")
    train = None
    if train_nll is not None:
        train = score_table(rows.iloc[:len(train_nll)].reset_index(drop=True),
                            {"nll": np.array(train_nll), "norm": np.array(train_norm)})
    return Outputs(score_table(rows, {"nll": np.array(nll), "norm": np.array(norm)}),
                   str(tmp_path / "maps.safetensors"), train)


def test_score_tier_combines_by_the_test_range_or_the_train_statistics(tmp_path):
    outputs = outputs_with(tmp_path, [10.0, 20.0, 30.0], [1.0, 3.0, 2.0],
                           train_nll=[10.0, 30.0], train_norm=[1.0, 3.0])

    def scores(**cfg):
        params = params_of(resolve_method("li", {"kind": "latent_inversion", **cfg}))
        return LatentInversion.score(params, outputs).scores

    np.testing.assert_allclose(scores(score="combined"), [0.0, 1.5, 1.5])
    np.testing.assert_allclose(scores(score="nll"), [10.0, 20.0, 30.0])
    np.testing.assert_allclose(scores(score="norm"), [1.0, 3.0, 2.0])
    # train mean 20 / 2, std (ddof 1) 14.14 / 1.414
    expected = (np.array([-10.0, 0.0, 10.0]) / np.sqrt(200)
                + np.array([-1.0, 1.0, 0.0]) / np.sqrt(2))
    np.testing.assert_allclose(scores(score="combined_train"), expected)


def test_combined_train_makes_the_shared_infer_job_score_the_train_split():
    from diffad.plan import method_set

    base = {"kind": "latent_inversion", "steps": 2}
    found = method_set({"a": {**base, "score": "combined"}, "b": {**base, "score": "nll"}})
    assert found.inferred_by == {"a": "a", "b": "a"} and found.train_scores == {"a": False}
    found = method_set({"a": {**base, "score": "combined"},
                        "t": {**base, "score": "combined_train"},
                        "r": {**base, "mode": "reconstruction", "score": "combined_train"}})
    assert found.inferred_by == {"a": "a", "t": "a", "r": "r"}
    assert found.train_scores == {"a": True, "r": False}


def test_inversion_then_sampling_returns_x0_on_a_trained_toy_model(weights_root):
    # Data on a 3-dimensional subspace: a distribution the tiny UNet learns in seconds.
    seed_everything(0)
    model = make(weights_root, epochs=100, batch_size=8)
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 192, 4, 4, generator=generator)
    data = torch.einsum("nk,kchw->nchw", torch.randn(32, 3, generator=generator), basis)
    data = data + 0.05 * torch.randn(data.shape, generator=generator)
    x0 = (data - data.mean((0, 2, 3), keepdim=True)) / data.std((0, 2, 3), keepdim=True)
    model.train_features(x0)
    xt = model.invert(x0[:4], steps=100)
    assert (xt - x0[:4]).norm() > 0.5 * x0[:4].norm()  # it really moved away from x0
    back = model.sample(xt, steps=100)
    error = (back - x0[:4]).norm() / x0[:4].norm()
    assert error < 0.1, float(error)


def test_nan_loss_stops_training_with_a_message(weights_root):
    from diffad.errors import TrainingError

    data = features(4)
    data[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingError, match="loss is nan at optimizer step 1"):
        make(weights_root).train_features(data)


def test_fit_save_load_and_feature_cache(weights_root, tmp_path):
    from PIL import Image

    from diffad.io import write_json
    from diffad.training import TrainingSession

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    rows = pd.DataFrame({"image_path": paths})
    model = make(weights_root, tmp_path / "cache")
    loss = model.fit(rows, TrainingSession())
    assert {"step", "loss", "epoch", "lr", "seconds"} <= set(loss.columns) and len(loss) == 2
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 1
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    write_json({"params": 1}, folder / "metadata.json")
    assert {p.name for p in folder.iterdir()} >= {"unet", "scheduler", "config.json",
                                                  "feature_stats.safetensors"}
    # One library call rebuilds it from the folder alone.
    again = load_model(folder, model.runtime, overrides={"infer_batch_size": 2})
    # The folder is its train tier; inference and run settings come from the job.
    assert again.params.values("train") == model.params.values("train")
    model.params = model.params.updated(infer_batch_size=2)
    first = np.concatenate([p.scores["nll"] for p in model.infer(rows)])
    second = np.concatenate([p.scores["nll"] for p in again.infer(rows)])
    np.testing.assert_allclose(first, second, rtol=1e-5)


def test_grid_leaves_out_reconstructions_that_start_before_the_first_step():
    grid = expand_method_grids({"recon": {
        "name": "r_s{steps}_p{start_percent}",
        "base": {"kind": "latent_inversion", "mode": "reconstruction"},
        "vary": {"steps": [3, 5, 10], "start_percent": [10, 20, 40]},
    }})
    assert "r_s3_p10" not in grid and "r_s3_p20" not in grid and "r_s5_p10" not in grid
    assert {"r_s3_p40", "r_s5_p20", "r_s10_p10"} <= set(grid)
    assert len(grid) == 6


@pytest.mark.parametrize(("cfg", "message"), [
    ({"score": "best"}, r"methods\.li\.score: 'best' is not one of"),
    ({"steps": 0}, r"methods\.li\.steps: must be >= 1, got 0"),
    ({"epochs": 0}, r"methods\.li\.epochs: must be >= 1, got 0"),
    ({"checkpoint_every": 0}, r"methods\.li\.checkpoint_every: must be >= 1"),
    ({"batch_size": 0}, r"methods\.li\.batch_size: must be >= 1"),
    ({"steps": 2000}, r"methods\.li: .*steps: 2000 exceeds train_timesteps"),
    ({"backbone": "no_such_net"}, r"methods\.li\.backbone: .*no_such_net"),
])
def test_bad_values_name_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        resolve_method("li", {"kind": "latent_inversion", **cfg})


def test_official_grid_evaluates_at_linspace_and_ends_at_alpha_zero(weights_root):
    alphas = torch.linspace(0.9999, 4e-5, 1000)
    path = inversion_path(2, alphas, "official")
    assert [t for t, _ in path[:-1]] == [0, 999] and path[-1][1] == 0.0
    assert [t for t, _ in inversion_path(3, alphas, "official")[:-1]] == [0, 500, 999]
    assert [t for t, _ in inversion_path(5, alphas, "official")[:-1]] == [0, 250, 500, 749, 999]
    model = make(weights_root, steps=3, timestep_spacing="official")
    seen = []
    model.unet.register_forward_pre_hook(lambda module, args: seen.append(int(args[1][0])))
    model.predict_features(features(2), 64)
    assert seen == [0, 500, 999]
    # With alpha-bar 0 at the end, x_T is the network's epsilon at t = 999.
    x0 = model.normalize(features(2))
    xt = model.invert(x0)
    path = inversion_path(3, model.scheduler.alphas_cumprod, "official")
    from diffad.models.ddim import run_ddim
    before_last = run_ddim(model._eps, x0, path[:-1])
    torch.testing.assert_close(xt, model._eps(before_last, 999).float())


def test_reconstruction_scores_do_not_depend_on_the_batch_size(weights_root):
    model = make(weights_root, mode="reconstruction", steps=10, start_percent=40)
    x = features(3)
    paths = [f"/data/c/test/good/{i}.png" for i in range(3)]
    together = model.predict_features(x, 64, paths).scores["error"]
    alone = [model.predict_features(x[i:i + 1], 64, paths[i:i + 1]).scores["error"][0]
             for i in (2, 0, 1)]
    np.testing.assert_allclose(alone, together[[2, 0, 1]], rtol=1e-5)
