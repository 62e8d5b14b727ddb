"""Real architectures with seeded random weights: the pretrained sources of a rehearsal.

A rehearsal (:mod:`diffad.plan.rehearsal`) runs a reproduction's real networks
at their real sizes without the hub: each source it uses is replaced by
:func:`rehearsal_source`, the same architecture built from its real config
with seeded random weights, saved with ``save_pretrained`` and loaded through
the same folders and loaders as the real weights (never a tiny stand-in):

- timm sources: ``timm.create_model(<model>, pretrained=False)``;
- ``sd15``: Stable Diffusion v1.5's UNet2DConditionModel (860 M), kl-f8
  AutoencoderKL (84 M), CLIP ViT-L/14 text tower (123 M) with CLIP's real BPE
  vocabulary (shipped with open_clip) and its PNDM scheduler settings;
- ``sd_vae_ft_mse``: the same AutoencoderKL; ``ddpm_celebahq_256``: the
  DDPM UNet2DModel of google/ddpm-celebahq-256 (114 M);
- ``clip_vit_b32``: open_clip's ViT-B-32 with QuickGELU (151 M);
- every other transformers hub source (the captioners): the repo's own
  ``config.json``, modelling code and processor files, fetched without the
  weights (a few MB; ``random`` in :mod:`~diffad.weights.transformers_weights`),
  so the hub must be reachable from where ``fetch_weights`` runs. A model that
  does not fit a 24 GB machine in float32 is rehearsed on the largest member
  of its family with the same code (:data:`SUBSTITUTES`), named in the fetch
  log, the folder's ``source.json`` and the cost table.

The configs below are those of the published model folders (their
``config.json``), written out so that the SD-size rehearsals need no hub. A
source with no real architecture recorded here fails when the rehearsal's DAG
is built, naming it. The weights land in their own cache
(``<weights_dir>/rehearsal``), never beside real ones.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from diffad.errors import ConfigError
from diffad.weights.builders import seeded
from diffad.weights.sources import WeightSource, register_source, weight_source

#: Seed of every random architecture: two fetches give the same weights.
SEED = 0

# Stable Diffusion v1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5: unet/, vae/,
# text_encoder/ config.json).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    norm_num_groups=32, act_fn="silu", center_input_sample=False, flip_sin_to_cos=True,
    freq_shift=0, downsample_padding=1, mid_block_scale_factor=1, norm_eps=1e-5)
SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=512,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    act_fn="silu")
CLIP_L14_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
# google/ddpm-celebahq-256 (unet/config.json).
DDPM_CELEBAHQ_256 = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4)


def clip_tokenizer() -> Any:
    """CLIP's BPE tokenizer (SD's ``CLIPTokenizer``) from the vocabulary that open_clip
    ships: the 49,408 tokens and merges of openai/clip-vit-large-patch14, offline."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = merges[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizer(str(Path(folder) / "vocab.json"),
                                  str(Path(folder) / "merges.txt"), pad_token="<|endoftext|>")
    tokenizer.model_max_length = 77
    return tokenizer


def sd_vae() -> Any:
    from diffusers import AutoencoderKL

    with seeded(SEED):
        return AutoencoderKL(**SD_VAE)


def sd15() -> Any:
    """Stable Diffusion v1.5's pipeline at its real size, random weights."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()
    text = {**CLIP_L14_TEXT, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    with seeded(SEED):
        unet = UNet2DConditionModel(**SD15_UNET)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text)).eval()
    return StableDiffusionPipeline(
        vae=sd_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(**SD15_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def ddpm_celebahq_256() -> Any:
    from diffusers import UNet2DModel

    with seeded(SEED):
        return UNet2DModel(**DDPM_CELEBAHQ_256)


def clip_vit_b32() -> tuple[Any, dict[str, Any]]:
    """open_clip's ViT-B-32 (OpenAI layout, QuickGELU): (model, its model config)."""
    import open_clip

    config = {**open_clip.get_model_config("ViT-B-32"), "quick_gelu": True}
    with seeded(SEED):
        model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    return model.eval(), config


#: Source name -> (repo, why): the largest member of the source's family that fits 24 GB
#: in float32 (the caption stage's CPU dtype) and runs the same modelling code.
SUBSTITUTES = {
    # 8.1 B, 32 GB in float32. InternVL2-2B (InternViT-300M + InternLM2-chat-1.8B, 2.2 B)
    # keeps the 8B's InternLM2 language model and remote code; the 4B is Phi-3 inside.
    "internvl2_8b": ("OpenGVLab/InternVL2-2B", "InternVL2-8B does not fit 24 GB in float32; "
                     "InternVL2-2B has the same InternLM2 code"),
    # 12.2 B, 49 GB in float32; Flan-T5-XL (3.9 B) is the same BLIP-2 T5 code.
    "blip2_flan_t5_xxl": ("Salesforce/blip2-flan-t5-xl", "BLIP-2 Flan-T5-XXL does not fit "
                          "24 GB in float32; Flan-T5-XL has the same code"),
}

#: Source name -> the factory of its real architecture (timm sources need none).
FACTORIES = {
    "sd15": "diffad.weights.rehearsal:sd15",
    "sd_vae_ft_mse": "diffad.weights.rehearsal:sd_vae",
    "ddpm_celebahq_256": "diffad.weights.rehearsal:ddpm_celebahq_256",
    "clip_vit_b32": "diffad.weights.rehearsal:clip_vit_b32",
}


def rehearsal_source(name: str) -> WeightSource:
    """The real architecture of source ``name`` with seeded random weights.

    Raises:
        ConfigError: naming the source, where no real architecture is recorded for it.
    """
    source = weight_source(name)
    note = "real architecture, seeded random weights (rehearsal)"
    if source.library == "timm":
        if not source.model:
            raise ConfigError(f"weights {name!r}: a timm folder without a model name; its "
                              "architecture cannot be rebuilt for a rehearsal")
        return replace(source, repo_id=None, pypi=None, random=True,
                       description=f"{source.model}: {note}")
    if source.factory:  # already built from a config (the default's tiny stand-ins)
        return source
    if source.library == "transformers" and source.repo_id and name not in FACTORIES:
        repo, why = SUBSTITUTES.get(name, (source.repo_id, ""))
        described = f"{repo}: {note}" + (f"; rehearsed in place of {source.repo_id}: {why}"
                                         if why else "")
        return replace(source, repo_id=repo, random=True, description=described)
    if name not in FACTORIES:
        raise ConfigError(f"weights {name!r} ({source.library}): no real architecture is "
                          f"recorded for a rehearsal (diffad.weights.rehearsal.FACTORIES: "
                          f"{sorted(FACTORIES)})")
    return WeightSource(name=name, library=source.library, factory=FACTORIES[name],
                        cls=source.cls, processor=source.processor,
                        description=f"{source.description}: {note}")


def use_rehearsal_sources(names: list[str] | tuple[str, ...]) -> None:
    """Register the rehearsal source of each of ``names`` in place of the real one, in this
    process (the DAG build and every job of a rehearsal do it alike)."""
    for name in dict.fromkeys(names):
        register_source(rehearsal_source(name), replace=True)


__all__ = ["FACTORIES", "SUBSTITUTES", "clip_tokenizer", "clip_vit_b32", "ddpm_celebahq_256",
           "rehearsal_source", "sd15", "sd_vae", "use_rehearsal_sources"]
