"""Paper 003 (VLMDiff): DiAD's conditioning, the kind's tiers and score tier. Its three
stages (captions, autoencoder, diffusion) run for real in the embedded default
(test_workflow.py); their job counts in test_plan.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import UNet2DConditionModel

from diffad.errors import ConfigError
from diffad.methods import resolve_method
from diffad.methods.vlmdiff import VlmDiff, detector_name, extractor_spec
from diffad.methods.vlmdiff.control import (
    HINT_CHANNELS,
    DiadControl,
    controlled_unet,
    freeze_unet_encoder,
    fusion_indices,
    residual_layout,
)
from diffad.plan import method_set
from diffad.scoring.fusion import avg_pool_max
from diffad.scoring.outputs import Outputs
from diffad.weights.tiny import tiny_sd_unet


@pytest.fixture(scope="module")
def unet() -> UNet2DConditionModel:
    return tiny_sd_unet()


def inputs(unet, batch: int = 2, side: int = 8):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, side, side, generator=generator)
    text = torch.randn(batch, 5, unet.config.cross_attention_dim, generator=generator)
    hint = torch.rand(batch, 3, 8 * side, 8 * side, generator=generator)
    return latents, torch.tensor([10, 700][:batch]), text, hint


def test_fusion_reads_sd_v15s_second_lowest_level_into_its_lowest_skips():
    # SD v1.5: 320/640/1280/1280, two resnets per block -> 12 skips; DiAD's SFF fuses
    # outs[6..8] (8 x 8) into outs[9..11] (4 x 4), the skips of output blocks 0-2.
    layout = residual_layout([320, 640, 1280, 1280], 2)
    assert len(layout) == 12
    assert fusion_indices(layout) == ([6, 7, 8], [9, 10, 11])
    assert [layout[i][0] for i in (6, 7, 8)] == [640, 1280, 1280]


def test_control_starts_at_zero_so_the_conditioned_unet_is_the_pretrained_one(unet):
    control = DiadControl.from_unet(unet)
    latents, t, text, hint = inputs(unet)
    with torch.no_grad():
        residuals, middle = control(latents, t, text, hint)
        expected = unet(latents, t, encoder_hidden_states=text).sample
        controlled = controlled_unet(unet, control, latents, t, text, hint)
    assert all(float(r.abs().max()) == 0 for r in residuals) and float(middle.abs().max()) == 0
    assert torch.equal(controlled, expected)
    # The hint encoder is DiAD's: x8 down to the latent grid, last conv zero.
    embedding = control.control.controlnet_cond_embedding
    assert embedding.conv_out.out_channels == unet.config.block_out_channels[0]
    assert float(embedding.conv_out.weight.detach().abs().max()) == 0
    assert tuple(control.control.config.conditioning_embedding_out_channels) == HINT_CHANNELS


def test_control_reaches_only_the_middle_and_the_lowest_skips(unet):
    control = DiadControl.from_unet(unet)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained control: every zero-initialised layer non-zero
        for p in control.parameters():
            if float(p.abs().max()) == 0:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    latents, t, text, hint = inputs(unet)
    with torch.no_grad():
        residuals, middle = control(latents, t, text, hint)
        other, _ = control(latents, t, text, torch.rand(hint.shape, generator=generator))
    lowest = {i for i, (_, level) in enumerate(residual_layout(
        unet.config.block_out_channels, unet.config.layers_per_block)) if level == 1}
    for i, r in enumerate(residuals):
        assert (float(r.abs().max()) > 0) == (i in lowest), i
        assert r.shape[-1] == (4 if i in lowest else 8)
    assert float(middle.abs().max()) > 0
    # The hint matters: another image gives another control.
    assert not torch.allclose(other[max(lowest)], residuals[max(lowest)])


def test_the_unet_encoder_is_frozen_and_its_decoder_trains(unet):
    unet = tiny_sd_unet()
    control = DiadControl.from_unet(unet)
    trainable = freeze_unet_encoder(unet)
    names = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("up_blocks.", "conv_out.", "conv_norm_out."))
                         for n in names)
    assert len(trainable) == len(names)
    latents, t, text, hint = inputs(unet)
    controlled_unet(unet, control, latents, t, text, hint).pow(2).mean().backward()
    assert all(p.grad is None for n, p in unet.named_parameters() if n.startswith("down_blocks"))
    assert any(p.grad is not None for p in control.parameters())


def test_extractor_specs_and_detector_names():
    assert extractor_spec("dino_vits8") == ("dino_vits8", None, None)
    assert extractor_spec("resnet50_ram:1,2,3") == ("resnet50_ram", [1, 2, 3], None)
    assert extractor_spec("dinov2_vits14@224") == ("dinov2_vits14", None, 224)
    assert detector_name("resnet50_ram:1,2,3") == "cos_resnet50_ram_1_2_3"
    with pytest.raises(ValueError, match="source"):
        extractor_spec("dino vits8")


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="methods.v: detector: 'dino_vitb8' is not one of"):
        resolve_method("v", {"kind": "vlmdiff", "detector": "dino_vitb8"})
    with pytest.raises(ConfigError, match="methods.v.feature_extractors"):
        resolve_method("v", {"kind": "vlmdiff", "feature_extractors": ["no_such_net"]})
    with pytest.raises(ConfigError, match="caption_at_inference needs a captioner"):
        resolve_method("v", {"kind": "vlmdiff", "captioner": None, "caption_at_inference": True})
    with pytest.raises(ConfigError, match="methods.v.epochs: must be >= 1"):
        resolve_method("v", {"kind": "vlmdiff", "epochs": 0})


def test_tiers_share_one_model_and_one_inference():
    base = {"kind": "vlmdiff", "feature_extractors": ["dino_vits8", "dino_vitb8"]}
    found = method_set({
        "v": base,
        "v_vitb8": {**base, "detector": "dino_vitb8", "image_score": "max"},  # score tier
        "v_capinf": {**base, "caption_at_inference": True},  # infer tier
        "v_blip2": {**base, "captioner": "blip2"},  # train tier
    })
    assert found.trained_by == {"v": "v", "v_vitb8": "v", "v_capinf": "v", "v_blip2": "v_blip2"}
    assert found.inferred_by["v_vitb8"] == "v" and found.inferred_by["v_capinf"] == "v_capinf"
    capinf = VlmDiff.requirements(VlmDiff.Params(caption_at_inference=True))
    assert [a.stage for a in capinf.artefacts] == ["autoencoder", "captions"]
    assert [a.stage for a in capinf.infer_artefacts] == ["test_captions"]
    assert VlmDiff.nfe(VlmDiff.Params()) == 10
    assert VlmDiff.nfe(VlmDiff.Params(caption_at_inference=True)) == 20


def test_score_tier_smooths_and_pools_as_the_authors():
    maps = np.zeros((2, 64, 64), np.float32)
    maps[0, 30:34, 30:34] = 1.0  # a blob
    maps[1, 10, 10] = 1.0  # one hot pixel: the plain maximum ranks it first
    outputs = Outputs(table=pd.DataFrame(), maps_path="unused", _maps={"cos_dino_vits8": maps})
    params = VlmDiff.Params(sigma=0.0)
    pooled = VlmDiff.score(params, outputs).scores
    np.testing.assert_allclose(pooled, avg_pool_max(maps, 8, 8))
    assert pooled[0] > pooled[1]
    plain = VlmDiff.score(params.model_copy(update={"image_score": "max"}), outputs).scores
    np.testing.assert_allclose(plain, [1.0, 1.0])
    smoothed = VlmDiff.score(VlmDiff.Params(), outputs).maps
    assert smoothed.shape == maps.shape and smoothed[0].max() < 1.0


def test_a_text_encoder_that_does_not_fit_the_unets_cross_attention_fails_naming_both(
        tmp_path, registry):
    """The rehearsal's broken real-size setting of the issue: a text encoder whose token
    width is not the UNet's cross-attention width fails the train job with both settings
    named, before any step (as it would on the cluster)."""
    from diffad.methods import build_model
    from diffad.runtime import Runtime
    from diffad.weights import fetch_weights
    from diffad.weights.sources import WeightSource, register_source

    hub = tmp_path / "hub" / "unet_16"
    UNet2DConditionModel.from_config({**tiny_sd_unet().config,
                                      "cross_attention_dim": 16}).save_pretrained(hub)
    register_source(WeightSource(name="unet_16", library="diffusers", repo_id=str(hub),
                                 cls="UNet2DConditionModel"))
    root = tmp_path / "weights"
    for name in ("unet_16", "tiny_sd_unet", "minilm_l6"):
        fetch_weights(name, root)
    runtime = Runtime(device=torch.device("cpu"), weights_root=root, image_size=64)

    def model(unet: str):
        built = build_model(resolve_method("v", {"kind": "vlmdiff", "unet_weights": unet,
                                                 "text_encoder": "minilm_l6"}), runtime)
        built._build()
        return built

    model("tiny_sd_unet")._check_widths()  # 384-d MiniLM tokens, 384-d cross-attention
    with pytest.raises(ConfigError, match=r"text_encoder 'minilm_l6' gives 384-d tokens but "
                                          r"unet_weights 'unet_16' attends to 16-d ones"):
        model("unet_16")._check_widths()
