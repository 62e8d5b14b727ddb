"""Paper 003 (VLMDiff): DiAD's conditioning, the kind's tiers and score tier, and the
three stages (captions, autoencoder, diffusion) run for real through snakemake."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import UNet2DConditionModel
from test_workflow import REPO, planned_jobs, snakemake, write_config

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


# ---------------------------------------------------------------- the three stages, for real

VLMDIFF = {"kind": "vlmdiff", "captioner": "tiny", "autoencoder": "tiny_fast",
           "unet_weights": "tiny_sd_unet", "text_encoder": "minilm_l6", "epochs": 2,
           "batch_size": 8, "grad_accum": 1, "learning_rate": 1e-3, "start_timestep": 300,
           "feature_extractors": ["tf_efficientnet_lite0:1,2", "tf_efficientnet_lite0:2"],
           "infer_batch_size": 16}


def vlmdiff_config(weights_root: Path, n_train: int = 8) -> dict:
    return {
        "experiment": "vlmdiff",
        "reference_dir": str(REPO / "config" / "reference"),
        "datasets": {"synthetic": {
            "kind": "synthetic", "root": "data/synthetic", "image_size": 64,
            "synthetic": {"n_train": n_train, "n_test_good": 4, "n_test_defect": 1}}},
        "captioners": {"tiny": {"base": "tiny_blip2", "batch_size": 4}},
        "autoencoders": {"tiny_fast": {"base": "tiny", "epochs": 1}},
        "methods": {
            "vlmdiff": VLMDIFF,
            # A score setting only: it reuses vlmdiff's inference.
            "vlmdiff_l2": {**VLMDIFF, "detector": "tf_efficientnet_lite0:2",
                           "image_score": "max"},
        },
        "runtime": {"weights_dir": str(weights_root), "seed": 0},
    }


def jobs_by_rule(dry_run: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule, wildcards in planned_jobs(dry_run):
        out.setdefault(rule, []).append(wildcards)
    return out


@pytest.fixture(scope="module")
def vlmdiff_run(tmp_path_factory, weights_root):
    """The dry run's plan from scratch, then one complete run."""
    workdir = tmp_path_factory.mktemp("vlmdiff")
    write_config(workdir, vlmdiff_config(weights_root))
    plan = jobs_by_rule(snakemake(workdir, "--dry-run").stdout)
    snakemake(workdir)
    return workdir, plan


def test_one_autoencoder_and_one_caption_table_per_category_serve_every_job(vlmdiff_run):
    _, plan = vlmdiff_run
    assert plan["autoencoder"] == ["autoencoder=tiny_fast, dataset=synthetic, category=all"]
    assert sorted(plan["captions"]) == [
        f"captioner=tiny, dataset=synthetic, category={c}" for c in ("tiles", "widget")]
    # One multi-class model; one inference per category shared by both variants.
    assert plan["train"] == ["method=vlmdiff, dataset=synthetic, category=all"]
    assert sorted(plan["infer"]) == [
        f"method=vlmdiff, dataset=synthetic, category={c}" for c in ("tiles", "widget")]
    assert len(plan["evaluate"]) == 4
    assert "test_captions" not in plan  # no variant captions its test images


def test_the_multi_class_model_trains_once_and_is_evaluated_per_category(vlmdiff_run):
    workdir, _ = vlmdiff_run
    model = workdir / "results/models/vlmdiff/synthetic/all"
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["categories"] == ["tiles", "widget"] and meta["n_train"] == 16
    assert {p.name for p in model.iterdir()} >= {"unet", "control", "fusion.safetensors",
                                                 "config.json", "loss.parquet"}
    for category in ("tiles", "widget"):
        captions = pd.read_parquet(
            workdir / f"results/captions/tiny/synthetic/{category}.parquet")
        assert len(captions) == 8 and captions["caption"].str.len().min() > 0
        scores = pd.read_parquet(workdir / f"results/scores/vlmdiff/synthetic/{category}.parquet")
        assert {"score_cos_tf_efficientnet_lite0_1_2", "score_cos_tf_efficientnet_lite0_2"} <= set(
            scores.columns)
        assert set(scores["nfe"]) == {3}  # start_timestep 300: the grid's 201, 101, 1
        for variant in ("vlmdiff", "vlmdiff_l2"):
            metrics = pd.read_parquet(
                workdir / f"results/metrics/{variant}/synthetic/{category}.parquet")
            assert 0 <= float(metrics["i_auroc"].iloc[0]) <= 1
    autoencoder = workdir / "results/models/autoencoder/tiny_fast/synthetic/all"
    assert json.loads((autoencoder / "metadata.json").read_text())["finetuned"] is True
    # The report's page of sample captions per category.
    page = (workdir / "results/figures/captions/tiny/synthetic.html").read_text()
    assert "Describe the main object in detail." in page
    assert page.count('<th class="row">tiles</th>') == 3
    assert html.escape(captions["caption"].iloc[0]) in page


def test_a_changed_captioner_reruns_its_captions_and_what_depends_on_them(vlmdiff_run,
                                                                          weights_root):
    workdir, _ = vlmdiff_run
    assert "Nothing to be done" in snakemake(workdir, "--dry-run").stdout
    config = vlmdiff_config(weights_root)
    config["captioners"]["tiny"]["prompt"] = "What is this?"
    write_config(workdir, config)
    try:
        plan = jobs_by_rule(snakemake(workdir, "--dry-run").stdout)
    finally:
        write_config(workdir, vlmdiff_config(weights_root))
    assert len(plan["captions"]) == 2 and len(plan["train"]) == 1
    assert len(plan["infer"]) == 2 and len(plan["evaluate"]) == 4
    assert not {"autoencoder", "manifest", "fetch_weights"} & set(plan)


def test_a_killed_caption_job_resumes_without_redoing_finished_images(tmp_path, weights_root):
    config = vlmdiff_config(weights_root, n_train=24)
    # One image per batch, long captions: the job runs for seconds, a batch at a time.
    config["captioners"]["tiny"].update(batch_size=1, max_new_tokens=100, min_new_tokens=100)
    write_config(tmp_path, config)
    target = "results/captions/tiny/synthetic/tiles.parquet"
    partial = tmp_path / "results/captions/tiny/synthetic/.tiles.partial.parquet"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
           str(tmp_path), "--cores", "1", target]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if partial.is_file() and len(pd.read_parquet(partial)) >= 3:
                break
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kept = pd.read_parquet(partial)
    assert 3 <= len(kept) < 24, "the job was not killed half-way"
    assert not (tmp_path / target).exists()
    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, target, "--rerun-incomplete")
    final = pd.read_parquet(tmp_path / target)
    assert len(final) == 24 and not partial.exists()
    again = final.set_index("image_path").loc[kept["image_path"]]
    # The finished images were not captioned again: their rows are the killed run's.
    assert again["caption"].tolist() == kept["caption"].tolist()
    assert again["seconds"].tolist() == kept["seconds"].tolist()
    log = (tmp_path / "logs/captions/tiny/synthetic/tiles.log").read_text()
    assert f"resuming: {len(kept)} of 24 images already captioned" in log


def test_the_reproduction_config_dry_runs_with_every_ablation(tmp_path):
    result = snakemake(tmp_path, "--dry-run", "--configfile",
                       str(REPO / "config/experiments/vlmdiff.yaml"))
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout,
                                                     flags=re.M)}
    # Categories: MVTec AD 15, VisA 12, Real-IAD 30, COCO-AD 4 folds (a model each).
    # Autoencoders: sd15_ft per dataset (per fold on COCO-AD) + sd15 as it is on Real-IAD.
    assert counts["autoencoder"] == 1 + 1 + 2 + 4
    # Train captions by InternVL2, BLIP-2, DeepSeek-VL on every category (COCO's prompt on
    # COCO-AD); test captions where text conditions inference (Tables 4, 12; COCO-AD).
    assert counts["captions"] == 3 * (15 + 12 + 30 + 4)
    assert counts["test_captions"] == (15 + 12 + 30) + 3 * 4
    # Models: MVTec AD and VisA 6 each (VLMDiff and DiAD at 100 / 300 epochs, BLIP-2,
    # DeepSeek), Real-IAD 5 (+ the pretrained autoencoder), COCO-AD 4 per fold.
    assert counts["train"] == 2 * 6 + 5 + 4 * 4
    # Inferences per category: the models', plus captions at inference; the feature
    # extractor ablations (Tables 7, 13) are score settings over one inference.
    assert counts["infer"] == 7 * 15 + 7 * 12 + 6 * 30 + 4 * 4
    assert counts["evaluate"] == 12 * 15 + 7 * 12 + 11 * 30 + 4 * 4
    assert counts["build_tables"] == 1
