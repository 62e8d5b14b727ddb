"""ESM (paper 002): the MLE loss, the variance floor, NFE of the samplers, the variance-guided
step, detector maps, and score-tier fusion."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from diffad.errors import ConfigError
from diffad.methods import build_model, params_of, resolve_method
from diffad.methods.esm import Esm
from diffad.methods.esm.model import (
    ddim_step,
    eq5_step,
    eq11_step,
    eq13_step,
    guidance_dt,
    mle_loss,
)
from diffad.runtime import Runtime
from diffad.scoring.outputs import Outputs, score_table, write_maps

TINY = {"kind": "esm", "resolution": 32, "block_out_channels": [16, 32], "layers_per_block": 1,
        "attention_levels": 0, "feature_backbone": "tf_efficientnet_lite0",
        "feature_layers": [1, 2], "epochs": 1, "batch_size": 4, "t_d": 5}


def make(weights_root, **params):
    runtime = Runtime(device=torch.device("cpu"), weights_root=weights_root, image_size=48)
    torch.manual_seed(0)
    return build_model(resolve_method("esm", {**TINY, **params}), runtime)


def test_loss_is_the_gaussian_negative_log_likelihood_of_x_t():
    generator = torch.Generator().manual_seed(0)
    x0, noise, eps = (torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3))
    variance = torch.rand(2, 3, 4, 4, generator=generator) + 0.1
    alpha_bar = torch.tensor([0.9, 0.3])
    a = alpha_bar.view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    mu = a.sqrt() * x0 + (1 - a).sqrt() * eps
    nll = -torch.distributions.Normal(mu, variance.sqrt()).log_prob(xt)
    # Eq. 9: -2 log p = Eq. 10 + log(2 pi)
    torch.testing.assert_close(mle_loss(noise, eps, variance, alpha_bar) + math.log(2 * math.pi),
                               2 * nll.mean())


def test_predicted_variance_never_falls_below_the_floor(weights_root):
    model = make(weights_root, variance_floor=0.05)
    with torch.no_grad():
        for module in model.variance_stream.modules():
            if isinstance(module, torch.nn.Conv2d) and module.out_channels == 3:
                module.bias.fill_(-50.0)  # exp(-50): far below any floor
        _, variance = model.streams(torch.zeros(2, 3, 32, 32), torch.tensor([10, 10]))
    assert variance.min() >= 0.05


@pytest.mark.parametrize(("sampler", "guidance", "evaluations"),
                         [("sgm", None, 1), ("sgm_ddim", None, 1), ("esm", None, 1),
                          ("esm_sigma", "forward", 2), ("esm_sigma", "proposal", 2)])
def test_network_evaluations_per_sampler(weights_root, sampler, guidance, evaluations):
    dsm = sampler.startswith("sgm")
    model = make(weights_root, sampler=sampler, objective="dsm" if dsm else "mle",
                 **({"variance_guidance": guidance} if guidance else {}))
    calls = []
    model.mean_stream.register_forward_hook(lambda *a: calls.append("mean"))
    if model.variance_stream is not None:
        model.variance_stream.register_forward_hook(lambda *a: calls.append("variance"))
    model.reconstruct(torch.zeros(1, 3, 32, 32), [torch.Generator().manual_seed(0)])
    # One dual-stream evaluation per denoising step; esm_sigma evaluates the variance once
    # more per step: while diffusing (forward, Eq. 11, before any denoising) or at each
    # proposed x_{t-1} (proposal).
    assert calls.count("mean") == 5
    assert calls.count("variance") == (0 if dsm else 5 * evaluations)
    if guidance == "forward":
        assert calls[:6] == ["variance"] * 5 + ["mean"]
    params = model.params
    assert Esm.nfe(params) == 5 * evaluations + (0 if dsm else 2)


def test_eqs_11_and_13_at_dsms_variance_are_the_ddpm_forward_and_the_sgm_step():
    """The one time change dt_t = beta_t / (1 - abar_t) of both variance-guided equations:
    with sigma^2 = 1 - abar_t, Eq. 11 is DDPM's forward step (first order) and Eq. 13 is
    Eq. 5 with Eq. 4's denominator; any other variance changes both."""
    generator = torch.Generator().manual_seed(0)
    x, eps, xi = (torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3))
    beta, a = torch.tensor(0.02), torch.tensor(0.3)
    dt = guidance_dt(beta, a)
    torch.testing.assert_close(dt, beta / (1 - a))
    dsm = torch.full_like(x, float(1 - a))
    torch.testing.assert_close(eq11_step(x, dsm, xi, dt), (1 - beta / 2) * x + beta.sqrt() * xi)
    torch.testing.assert_close(eq13_step(x, eps, dsm, dt, a), eq5_step(x, eps, 1 - a, beta, a))
    # Eq. 11 literally: drift -sigma^2 x / 2 dt, diffusion sigma sqrt(dt).
    variance = torch.rand(2, 3, 4, 4, generator=generator) + 0.01
    torch.testing.assert_close(eq11_step(x, variance, xi, dt),
                               x - variance / 2 * x * dt + variance.sqrt() * dt.sqrt() * xi)
    # Eq. 13: (-x / 2 sigma^2 + x - mu) dt backwards, x - mu = sqrt(1 - abar) eps.
    torch.testing.assert_close(eq13_step(x, eps, variance, dt, a),
                               x - (-x / 2 * variance + (1 - a).sqrt() * eps) * dt)


def gaussian_toy(weights_root, guidance: str, scale_right: float) -> tuple[torch.Tensor, ...]:
    """Data N(m, s^2) per pixel, denoised by esm_sigma with the exact posterior epsilon and
    the MLE variance of Eq. 10 (floored), that variance multiplied by ``scale_right`` on the
    right half of the image: (x_0, reconstruction)."""
    model = make(weights_root, sampler="esm_sigma", variance_guidance=guidance, t_d=50)
    alphas, m, s2 = model.scheduler.alphas_cumprod, 0.2, 0.04

    def eps(x, t):  # E[eps | x_t] for Gaussian data
        a = alphas[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s2 + 1 - a)

    def variance(x, t):  # (1 - abar) Var[eps | x_t], Eq. 10's optimum, plus the floor
        a = alphas[t].view(-1, 1, 1, 1)
        v = ((1 - a) * a * s2 / (a * s2 + 1 - a) + 0.01) * torch.ones_like(x)
        v[..., 4:] *= scale_right
        return v

    model.variance = variance
    model.streams = lambda x, t: (eps(x, t), variance(x, t))
    x0 = m + s2 ** 0.5 * torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return x0, model.reconstruct(x0, [torch.Generator().manual_seed(i) for i in range(32)])


def test_the_forward_reading_noises_each_pixel_by_its_predicted_variance(weights_root):
    """Item 1 of the second reading: under `proposal` the variance barely reaches the result
    (it scales only the x / 2 term of Eq. 13); under `forward` (Eqs. 11 and 13) a pixel
    whose predicted variance is 10 times larger is diffused, and so reconstructed, much
    further from its input. Measured: mean change 0.086 (proposal) vs 0.39 (forward)."""
    change = {}
    for guidance in ("proposal", "forward"):
        x0, base = gaussian_toy(weights_root, guidance, 1.0)
        _, scaled = gaussian_toy(weights_root, guidance, 10.0)
        torch.testing.assert_close(scaled[..., :4], base[..., :4])  # per pixel: left as it was
        change[guidance] = (scaled - base)[..., 4:].abs().mean().item()
        if guidance == "forward":
            error = [(r - x0)[..., 4:].abs().mean().item() for r in (base, scaled)]
            assert error[1] > 2 * error[0]
    assert change["forward"] > 3 * change["proposal"]


def test_sgm_is_eq5_with_the_dsm_denominator_and_ddim_halves_its_score():
    generator = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 4, 4, generator=generator), torch.randn(2, 3, 4, 4,
                                                                      generator=generator)
    beta, a = torch.tensor(0.02), torch.tensor(0.3)
    # Eq. 5 stepped back over dt = 1 with Eq. 4's denominator, x - mu = sqrt(1 - abar) eps:
    sgm = eq5_step(x, eps, 1 - a, beta, a)
    torch.testing.assert_close(sgm, x + beta * (x / 2 - eps / (1 - a).sqrt()))
    # Sec. 2: ESM differs from DSM only in that denominator, so ESM at sigma^2 = 1 - abar
    # is SGM; another variance changes the step.
    torch.testing.assert_close(eq5_step(x, eps, torch.full_like(x, 0.7), beta, a), sgm)
    assert not torch.allclose(eq5_step(x, eps, torch.full_like(x, 0.1), beta, a), sgm)
    # DDIM (eta 0) weights the score term by 1/2 where Eq. 5 weights it by 1 (first
    # order in beta, with abar_{t-1} = abar_t / (1 - beta_t)).
    small = torch.tensor(1e-5, dtype=torch.float64)
    x, eps, a = x.double(), eps.double(), a.double()
    drift = x * (1 + small / 2)
    ratio = ((ddim_step(x, eps, a, a / (1 - small)) - drift)
             / (eq5_step(x, eps, 1 - a, small, a) - drift))
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.5), rtol=1e-3, atol=0)


def test_the_dsm_model_samples_with_either_sgm_rule(weights_root):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out = {sampler: make(weights_root, sampler=sampler, objective="dsm").reconstruct(
        x, [torch.Generator().manual_seed(0)]) for sampler in ("sgm", "sgm_ddim")}
    assert not torch.allclose(out["sgm"], out["sgm_ddim"])
    with pytest.raises(ConfigError, match="sampler: esm needs the variance stream"):
        resolve_method("e", {"kind": "esm", "sampler": "esm", "objective": "dsm"})


def test_variance_guided_step_moves_a_sample_toward_its_mean(weights_root):
    """On x_t ~ N(mu, s^2) with the network's exact epsilon, a step reduces |x - mu|."""
    model = make(weights_root, sampler="esm_sigma")
    alphas = model.scheduler.alphas_cumprod
    t, mu = 50, torch.full((1, 3, 4, 4), 0.3)
    a = alphas[t]
    deviation = torch.full((1, 3, 4, 4), 0.8)
    x = mu + deviation
    eps = deviation / (1 - a).sqrt()  # x - mu_t = sqrt(1 - abar) eps
    variance = torch.full_like(x, float(1 - a))
    model.variance = lambda x_, t_: variance
    step = model.variance_guided_step(x, t, eps, variance, model.scheduler.betas[t], a)
    assert ((step - mu).abs() < (x - mu).abs()).all()


def image_rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"category": ["c"] * n,
                         "image_path": [f"/data/c/test/crack/{i:03d}.png" for i in range(n)]})


def test_every_detector_map_has_the_image_shape(weights_root):
    model = make(weights_root)
    prediction = model.predict(torch.rand(2, 3, 48, 48), image_rows(2))
    assert set(prediction.maps) == {"cos", "re", "u", "kl"}
    for name, m in prediction.maps.items():  # the extremes train normalization reads
        np.testing.assert_array_equal(prediction.scores[f"{name}_max"], m.max(axis=(1, 2)))
        np.testing.assert_array_equal(prediction.scores[f"{name}_min"], m.min(axis=(1, 2)))
    assert all(m.shape == (2, 48, 48) and np.isfinite(m).all() for m in prediction.maps.values())
    assert (prediction.maps["kl"] >= -1e-5).all()  # a KL divergence
    sgm = make(weights_root, sampler="sgm", objective="dsm")
    assert set(sgm.predict(torch.rand(1, 3, 48, 48), image_rows(1)).maps) == {"cos", "re"}


@pytest.mark.parametrize("sampler", ["esm", "esm_sigma"])
def test_scores_do_not_depend_on_the_batch_size(weights_root, sampler):
    """Each image's noise comes from (seed, image): a batch of 5 scores each image as it is
    scored alone, whatever its position (esm_sigma draws once per diffusion step)."""
    model = make(weights_root, t_d=3, sampler=sampler)
    images = torch.rand(5, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    rows = image_rows(5)
    together = model.predict(images, rows).maps["re"]
    alone = [model.predict(images[i:i + 1], rows.iloc[i:i + 1]).maps["re"][0]
             for i in (4, 2, 0, 1, 3)]
    np.testing.assert_allclose(np.stack(alone), together[[4, 2, 0, 1, 3]], rtol=1e-4,
                               atol=1e-6)


def test_fusion_weights_and_top_k_live_in_the_score_tier(tmp_path):
    rows = pd.DataFrame({"image_path": ["a", "b"], "category": "c", "defect_type": "good",
                         "label": 0, "mask_path": None})
    maps = {name: np.zeros((2, 20, 20), np.float32) for name in ("cos", "re", "u", "kl")}
    maps["re"][1, :5, :5] = 1.0  # 25 hot pixels in image b
    maps["cos"][0, 0, 0] = 1.0  # one in image a
    write_maps(maps, tmp_path / "m.safetensors")
    outputs = Outputs(score_table(rows, {n: np.zeros(2) for n in maps}),
                      str(tmp_path / "m.safetensors"))

    def scores(**cfg):
        return Esm.score(params_of(resolve_method("e", {"kind": "esm", **cfg})), outputs).scores

    np.testing.assert_allclose(scores(top_k=25), [1 / 25, 1.0])
    np.testing.assert_allclose(scores(top_k=1, weight_re=0.0), [1.0, 0.0])
    # sgm has no variance: its u and kl weights are ignored, not an error.
    np.testing.assert_allclose(scores(top_k=25, objective="dsm", sampler="sgm"), [1 / 25, 1.0])
    assert Esm.detectors(params_of(resolve_method("e", {"kind": "esm"}))) == (
        "cos", "u", "kl", "re")


def test_train_normalization_scales_each_map_by_the_train_splits_range(tmp_path):
    rows = pd.DataFrame({"image_path": ["a", "b"], "category": "c", "defect_type": "good",
                         "label": 0, "mask_path": None})
    maps = {"cos": np.zeros((2, 4, 4), np.float32), "re": np.zeros((2, 4, 4), np.float32)}
    maps["cos"][1] = 2.0
    maps["re"][0, 0, 0] = 0.5
    write_maps(maps, tmp_path / "m.safetensors")
    train = score_table(rows, {"cos_min": np.array([0.5, 1.0]), "cos_max": np.array([1.0, 1.5]),
                               "re_min": np.array([0.0, 0.0]), "re_max": np.array([0.5, 1.0])})
    outputs = Outputs(score_table(rows, {n: np.zeros(2) for n in maps}),
                      str(tmp_path / "m.safetensors"), train=train)
    params = params_of(resolve_method("e", {"kind": "esm", "objective": "dsm",
                                            "normalization": "train", "top_k": 1}))
    # cos over the train range [0.5, 1.5] -> image a: -0.5, image b: 1.5 (past the range);
    # re over [0, 1] -> 0.5 at one pixel of a. Top-1 of the sum:
    np.testing.assert_allclose(Esm.score(params, outputs).scores, [-0.5 + 0.5, 1.5])
    assert Esm.needs_train_scores(params)
    split = params_of(resolve_method("e", {"kind": "esm", "objective": "dsm", "top_k": 1}))
    np.testing.assert_allclose(Esm.score(split, outputs).scores, [1.0, 1.0])
    assert not Esm.needs_train_scores(split)


def test_the_esm_samplers_need_the_variance_stream():
    with pytest.raises(ConfigError, match="sampler: esm_sigma needs the variance stream"):
        resolve_method("e", {"kind": "esm", "sampler": "esm_sigma", "objective": "dsm"})
    with pytest.raises(ConfigError, match="methods.e.variance_floor: must be > 0"):
        resolve_method("e", {"kind": "esm", "variance_floor": 0.0})


def test_at_the_variance_floor_s_u_and_s_kl_are_multiples_of_s_re(weights_root):
    """Why `variance_timestep` exists: where the variance stream predicts ~0 (an MLE
    model at t = 0), sigma^2 is the floor everywhere and both detectors scale S_RE."""
    model = make(weights_root, variance_floor=0.01)
    with torch.no_grad():
        for module in model.variance_stream.modules():
            if isinstance(module, torch.nn.Conv2d) and module.out_channels == 3:
                module.weight.zero_()
                module.bias.fill_(-50.0)
    maps = model.predict(torch.rand(2, 3, 48, 48), image_rows(2)).maps
    np.testing.assert_allclose(maps["u"], maps["re"] / 0.01, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps["kl"], maps["re"] / 0.02, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="variance_timestep: 1000 must be below"):
        resolve_method("e", {"kind": "esm", "variance_timestep": 1000})


def test_a_later_variance_timestep_reads_the_variance_of_both_images_noised_alike(
        weights_root):
    """At t > 0 the variance stream sees x_t as in training (Eq. 10): input and
    reconstruction noised to t by one image-seeded draw; at t = 0 the clean images."""
    from diffad.models.noise import image_generators, image_noise

    x0, x_hat = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    clean = make(weights_root, variance_timestep=0)
    noisy = make(weights_root, variance_timestep=40)
    paths = ["a.png", "b.png"]
    at_0 = clean.variances_at(x0, x_hat, image_generators(0, paths))
    for got, x in zip(at_0, (x0, x_hat), strict=True):
        torch.testing.assert_close(got, clean.variance(x, clean._timestep(x, 0)))
    at_40 = noisy.variances_at(x0, x_hat, image_generators(0, paths))
    a = noisy.scheduler.alphas_cumprod[40]
    noise = image_noise(x0.shape, image_generators(0, paths))
    for got, x in zip(at_40, (x0, x_hat), strict=True):
        want = noisy.variance(a.sqrt() * x + (1 - a).sqrt() * noise, noisy._timestep(x, 40))
        torch.testing.assert_close(got, want)


def test_nonfinite_outputs_stop_a_real_run_and_are_recorded_in_a_rehearsal(tmp_path, caplog):
    """ESM's samplers divide by the predicted variance: with a rehearsal's random weights
    they may diverge, which is no crash of the code path."""
    from diffad.scoring.outputs import write_outputs

    table = score_table(image_rows(2), {"re": np.array([1.0, np.nan])})
    maps = {"re": np.array([[[np.inf]], [[0.5]]])}
    paths = (str(tmp_path / "s.parquet"), str(tmp_path / "m.safetensors"))
    with pytest.raises(FloatingPointError, match=r"non-finite values in \['score_re', 're'\]"):
        write_outputs(table, maps, *paths)
    assert not (tmp_path / "s.parquet").exists()
    write_outputs(table, maps, *paths, nonfinite="record")
    assert pd.read_parquet(paths[0])["score_re"].tolist() == [1.0, 0.0]
    assert "written as 0" in caplog.text
