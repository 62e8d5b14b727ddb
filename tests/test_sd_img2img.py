"""Paper 000: SD img2img (with its LoRA), the latent UNet and the CLIP patch baseline,
their detectors and hybrid score tier (an alpha sweep through snakemake: test_workflow.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from diffad.errors import ConfigError
from diffad.methods import build_model, load_model, resolve_method
from diffad.methods.latent_unet import LatentUnet
from diffad.methods.sd_img2img import SdImg2Img
from diffad.models.reconstruction import ReconstructionDetectors
from diffad.plan import method_set
from diffad.runtime import Runtime
from diffad.scoring.outputs import Outputs
from diffad.training import TrainingSession
from diffad.weights import fetch_weights

TINY_SD = {"kind": "sd_img2img", "weights": "tiny_sd", "clip_weights": "tiny_clip",
           "sd_resolution": 64, "steps": 10, "infer_batch_size": 8}
TINY_LATENT = {"kind": "latent_unet", "vae_weights": "tiny_sd", "clip_weights": "tiny_clip",
               "resolution": 64, "block_out_channels": [16, 32], "layers_per_block": 1,
               "attention_levels": 0, "epochs": 2, "steps": 10}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory, weights_root) -> Path:
    """The shared cache (EfficientNet-Lite0) plus the tiny SD pipeline and CLIP."""
    for name in ("tiny_sd", "tiny_clip"):
        if not (weights_root / name / "source.json").is_file():
            fetch_weights(name, weights_root)
    return weights_root


@pytest.fixture(scope="module")
def runtime(tiny_root) -> Iterator[Runtime]:
    # Tiny models gain nothing from more threads (and OpenMP's spinning slows them).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Runtime(device=torch.device("cpu"), weights_root=tiny_root, image_size=32)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(6):  # six different images (write_png seeds by the path's length)
        pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
        paths.append(str(root / f"{i}.png"))
    return pd.DataFrame({"image_path": paths, "category": "bottle", "split": "train",
                         "label": [0, 0, 0, 0, 1, 1], "defect_type": "good"})


def images(rows: pd.DataFrame, runtime: Runtime) -> torch.Tensor:
    from diffad.data.loader import image_batches

    return next(image_batches(rows["image_path"].tolist(), runtime, len(rows)))


# ------------------------------------------------------------------- declarations

def test_tiers_share_reconstructions_across_alpha_and_the_lora_across_settings():
    found = method_set({
        "sd": TINY_SD,
        "sd_a05": {**TINY_SD, "alpha": 0.5, "standardize": "train"},  # score tier
        "sd_s07": {**TINY_SD, "strength": 0.7},  # infer tier
        "sd_lora": {**TINY_SD, "lora": True},
        "sd_lora_s07": {**TINY_SD, "lora": True, "strength": 0.7},
    })
    assert found.inferred_by["sd_a05"] == "sd" and found.inferred_by["sd_s07"] == "sd_s07"
    assert found.trained_by["sd_s07"] == "sd" and found.trained_by["sd_lora_s07"] == "sd_lora"
    # Standardising by the train split makes the shared inference score the train split.
    assert found.train_scores["sd"] and not found.train_scores["sd_s07"]


def test_nfe_counts_the_steps_img2img_runs_and_guidance_doubles_them():
    params = SdImg2Img.Params(steps=30, strength=0.35)
    assert SdImg2Img.nfe(params) == 2 * 10
    assert SdImg2Img.nfe(params.model_copy(update={"guidance_scale": 1.0})) == 10
    assert LatentUnet.nfe(LatentUnet.Params(start="clean", sample_steps=250)) == 250
    assert LatentUnet.nfe(LatentUnet.Params(steps=30, strength=0.5)) == 15


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "dpmsolver"])
def test_nfe_is_what_the_pipeline_runs(runtime, rows, scheduler):
    model = build_model(resolve_method("sd", {**TINY_SD, "scheduler": scheduler,
                                              "guidance_scale": 1.0}), runtime)
    model.fit(rows.head(2), TrainingSession())
    calls = []
    model.pipeline().unet.register_forward_hook(lambda *_: calls.append(1))
    model.reconstruct_images(images(rows.head(1), runtime), rows.head(1))
    assert len(calls) == SdImg2Img.nfe(model.params) == 3 + (scheduler == "pndm")


def test_the_lora_prompt_is_encoded_with_its_attention_mask_as_the_notebook_did(runtime):
    from diffusers import StableDiffusionPipeline

    from diffad.methods.sd_img2img.model import instance_prompt_embedding
    from diffad.weights import load_diffusers

    pipe = load_diffusers("tiny_sd", runtime.weights_root, cls=StableDiffusionPipeline)
    masked = instance_prompt_embedding(pipe, "photo of mvbottle object", True)
    plain = instance_prompt_embedding(pipe, "photo of mvbottle object", False)
    # Without the mask: exactly what SD's pipeline encodes (and what inference uses).
    assert torch.equal(plain, pipe.encode_prompt("photo of mvbottle object",
                                                 torch.device("cpu"), 1, False)[0])
    # The causal mask already hides the padding from the prompt's own tokens (BOS, 5
    # words' tokens, EOS); the attention mask changes the padding rows only.
    n = int(pipe.tokenizer("photo of mvbottle object", return_tensors="pt")
            .attention_mask.sum())
    assert torch.allclose(masked[:, :n], plain[:, :n], atol=1e-6)
    assert not torch.allclose(masked[:, n:], plain[:, n:], atol=1e-3)
    # The LoRA variant's recipe: DreamBooth's max_grad_norm and the mask by default.
    params = SdImg2Img.Params(lora=True)
    assert params.trainer_settings(0).grad_clip == 1.0 and params.lora_text_attention_mask


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="methods.v.alpha: must be <= 1"):
        resolve_method("v", {**TINY_SD, "alpha": 1.5})
    with pytest.raises(ConfigError, match="runs no denoising step"):
        resolve_method("v", {**TINY_SD, "steps": 2, "strength": 0.1})
    with pytest.raises(ConfigError, match="methods.v.weights"):
        resolve_method("v", {**TINY_SD, "weights": "no_such_pipeline"})
    with pytest.raises(ConfigError, match="multiple of 8"):
        resolve_method("v", {**TINY_LATENT, "resolution": 60})


def outputs(scores: dict[str, np.ndarray], train: dict[str, np.ndarray] | None = None,
            maps: dict[str, np.ndarray] | None = None) -> Outputs:
    table = pd.DataFrame({f"score_{k}": v for k, v in scores.items()})
    train_table = None if train is None else pd.DataFrame(
        {f"score_{k}": v for k, v in train.items()})
    return Outputs(table=table, maps_path="unused", train=train_table, _maps=maps or {})


def test_hybrid_score_raw_and_standardised_and_the_fidelity_means():
    n = 4
    maps = {"sq": np.ones((n, 8, 8), np.float32), "abs": np.zeros((n, 8, 8), np.float32)}
    scores = {"mse": np.array([0.001, 0.002, 0.003, 0.010]),
              "clip": np.array([0.10, 0.05, 0.20, 0.15]), "ssim": np.full(n, 0.25)}
    raw = SdImg2Img.score(SdImg2Img.Params(alpha=0.8), outputs(scores, maps=maps))
    np.testing.assert_allclose(raw.scores, 0.8 * scores["mse"] + 0.2 * scores["clip"])
    # The report's three measures of reconstruction, means over the test images.
    assert raw.statistics == pytest.approx({"ssim": 0.75, "mse": 0.004, "clip": 0.125})
    assert raw.maps.sum() == n * 64  # the `sq` map
    train = {"mse": np.array([0.001, 0.003]), "clip": np.array([0.1, 0.3])}
    std = SdImg2Img.score(SdImg2Img.Params(alpha=0.5, standardize="train",
                                           anomaly_map="abs"), outputs(scores, train, maps))
    z_mse = (scores["mse"] - 0.002) / np.std([0.001, 0.003], ddof=1)
    z_clip = (scores["clip"] - 0.2) / np.std([0.1, 0.3], ddof=1)
    np.testing.assert_allclose(std.scores, 0.5 * z_mse + 0.5 * z_clip)
    assert std.maps.sum() == 0
    assert std.statistics == raw.statistics  # raw means, whatever the score standardises


def test_detectors_vanish_for_a_perfect_reconstruction(runtime, rows):
    x = images(rows, runtime)
    # LPIPS on EfficientNet-Lite0 (uniform channel weights: the cache has no VGG-16).
    detectors = ReconstructionDetectors("tiny_clip", runtime, "tf_efficientnet_lite0")
    same_scores, same_maps = detectors(x, x.clone())
    assert set(same_scores) == {"mse", "clip", "ssim", "lpips"}
    for value in same_scores.values():
        np.testing.assert_allclose(value, 0, atol=1e-5)
    assert all(float(np.abs(m).max()) == 0 for m in same_maps.values())
    other = x.flip(-1)
    scores, maps = detectors(x, other)
    assert all((v > 0).all() for v in scores.values())
    assert maps["sq"].shape == maps["abs"].shape == (len(x), 32, 32)
    # Without a perceptual network no LPIPS is computed (nor its network loaded).
    plain = ReconstructionDetectors("tiny_clip", runtime)
    assert set(plain(x, other)[0]) == {"mse", "clip", "ssim"} and plain._lpips is None


def test_the_optional_perceptual_term_is_a_score_setting_on_a_stored_lpips():
    n = 4
    scores = {"mse": np.array([0.001, 0.002, 0.003, 0.010]),
              "clip": np.array([0.10, 0.05, 0.20, 0.15]), "ssim": np.full(n, 0.25),
              "lpips": np.array([0.3, 0.1, 0.2, 0.4])}
    maps = {"sq": np.ones((n, 8, 8), np.float32)}
    params = SdImg2Img.Params(alpha=0.8, perceptual_weights="vgg16", weight_lpips=0.5)
    got = SdImg2Img.score(params, outputs(scores, maps=maps))
    np.testing.assert_allclose(got.scores, 0.8 * scores["mse"] + 0.2 * scores["clip"]
                               + 0.5 * scores["lpips"])
    # Inference stores LPIPS where the infer setting names its network; the weight is a
    # score setting over that one inference, and the network a weight the job needs.
    found = method_set({"sd": {**TINY_SD, "perceptual_weights": "vgg16"},
                        "sd_p": {**TINY_SD, "perceptual_weights": "vgg16",
                                 "weight_lpips": 0.5}})
    assert found.inferred_by["sd_p"] == "sd"
    assert "vgg16" in SdImg2Img.requirements(params).weights
    with pytest.raises(ConfigError, match="weight_lpips: 0.5 needs perceptual_weights"):
        resolve_method("sd", {**TINY_SD, "weight_lpips": 0.5})


# ------------------------------------------------------------------------- models

def test_lora_trains_saves_and_changes_the_reconstructions(tmp_path, runtime, rows):
    plain = build_model(resolve_method("sd", TINY_SD), runtime)
    plain.fit(rows, TrainingSession())
    x = images(rows.head(2), runtime)
    before = plain.reconstruct_images(x, rows.head(2))
    config = {**TINY_SD, "lora": True, "max_steps": 3, "lora_resolution": 32,
              "grad_accum": 2, "learning_rate": 1e-2, "lora_rank": 4, "lora_alpha": 16.0}
    model = build_model(resolve_method("sd", config), runtime)
    curve = model.fit(rows, TrainingSession())
    assert curve["step"].tolist() == [1, 2, 3]  # max_steps, not epochs
    model.save_pretrained(tmp_path)
    (tmp_path / "metadata.json").write_text("{}")
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()
    # The folder holds the train tier: inference settings (sd_resolution 64) come with
    # the loading job, as in the infer rule; without them it would run at 512 px.
    loaded = load_model(tmp_path, runtime, overrides=model.params.values("infer", "run"))
    after = loaded.reconstruct_images(x, rows.head(2))
    assert after.shape == before.shape == x.shape
    assert not torch.allclose(after, before)  # the LoRA is fused into the UNet
    # ... at its trained scale alpha / rank = 4, not at the scale 1 of alpha = rank.
    (adapter,) = loaded.pipeline().unet.peft_config.values()
    assert (adapter.r, adapter.lora_alpha) == (4, 16.0)
    again = loaded.reconstruct_images(x, rows.head(2))
    assert torch.equal(after, again)  # seeded: the same reconstructions


def test_latent_unet_trains_and_the_clean_start_costs_its_sample_steps(runtime, rows):
    model = build_model(resolve_method("lu", TINY_LATENT), runtime)
    curve = model.fit(rows, TrainingSession())
    assert len(curve) == 2 and np.isfinite(curve["loss"]).all()
    calls = []
    model.unet.register_forward_hook(lambda *_: calls.append(1))
    x = images(rows.head(2), runtime)
    prediction = model.predict(x, rows.head(2))
    assert len(calls) == LatentUnet.nfe(model.params) == 3  # int(10 x 0.35)
    assert set(prediction.scores) == {"mse", "clip", "ssim"}
    pixel = build_model(resolve_method("px", {
        **TINY_LATENT, "space": "pixel", "resolution": 32, "start": "clean",
        "sample_steps": 7, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}),
        runtime)
    pixel.fit(rows, TrainingSession())
    calls.clear()
    pixel.unet.register_forward_hook(lambda *_: calls.append(1))
    assert pixel.predict(x, rows.head(2)).maps["sq"].shape == (2, 32, 32)
    assert len(calls) == 7


def test_clip_patch_distance_is_zero_on_a_train_image(runtime, rows):
    model = build_model(resolve_method("cp", {"kind": "clip_patch",
                                              "clip_weights": "tiny_clip"}), runtime)
    model.fit(rows.head(4), TrainingSession())
    x = images(rows, runtime)
    prediction = model.predict(x, rows)
    assert prediction.maps["patch"].shape == (6, 32, 32)
    np.testing.assert_allclose(prediction.scores["max"][:4], 0, atol=1e-5)
    assert (prediction.scores["max"][4:] > 1e-3).all()


# ---------------------------------------------------------------- through snakemake


@pytest.mark.parametrize("name", ["sd", "latent_unet"])
def test_reconstructions_do_not_depend_on_the_batch_size(runtime, rows, name):
    """Each image's noise comes from (seed, image): a batch reconstructs each image as it is
    reconstructed alone, whatever its position (the pipeline takes one generator per image;
    the clean start draws a DDPM step's noise per image too)."""
    config = TINY_SD if name == "sd" else {**TINY_LATENT, "start": "clean", "sample_steps": 3}
    model = build_model(resolve_method(name, config), runtime)
    model.fit(rows.head(2), TrainingSession())
    test = rows.iloc[[3, 4, 5]]
    x = images(test, runtime)
    together = model.reconstruct_images(x, test)
    for i in (2, 0, 1):
        alone = model.reconstruct_images(x[i:i + 1], test.iloc[i:i + 1])
        torch.testing.assert_close(alone[0], together[i], rtol=1e-4, atol=1e-5)
