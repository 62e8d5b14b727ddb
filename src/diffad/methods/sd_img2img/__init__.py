"""Stable Diffusion img2img reconstruction with the hybrid MSE + CLIP score (paper 000).

Paper 000 (a student report, "A Critical Evaluation of Diffusion Models") asks
whether latent diffusion reconstructs industrial images faithfully enough for
anomaly detection, and concludes that it does not; it prints no numbers. Its
notebooks (s4kr3d-w0r1d/exploratory_project) fix what it leaves open; where
the two differ, the report's choice is the default and the notebook's a
setting (docs/protocols/sd_img2img.md).

Inference (per category): each test image, upscaled to ``sd_resolution``
(512), goes through diffusers' ``StableDiffusionImg2ImgPipeline`` (SD v1.5)
with the prompt "a flawless {category}" and the negative prompt "holes,
stains, defects, damaged, distortion": noised to ``strength`` of the
schedule, denoised with ``steps`` x ``strength`` steps of ``scheduler`` under
classifier-free guidance ``guidance_scale``, decoded, resized back. Stored
per image: MSE, CLIP ViT-B/32 image-embedding cosine distance, 1 - SSIM, and
the squared-error and absolute-error maps (:mod:`diffad.models.reconstruction`).

``lora: true`` first trains a LoRA of the UNet's attention on the category's
normal train images with the DreamBooth prompt "photo of mv{category} object"
(the notebook's rank 8, lr 1e-4, 600 steps, batch 1 x accumulation 4, gradients
clipped at norm 1, the prompt encoded with its attention mask), on the shared
trainer; every img2img setting of the variant reuses it.

Score tier: the hybrid score of :mod:`diffad.methods.reconstruction`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from diffad.methods.base import MethodKind, Requirements, Scored
from diffad.methods.params import DiffusersWeights, OpenClipWeights, infer, run, train
from diffad.methods.reconstruction import (
    FEWEST_STRENGTH_STEPS,
    HybridScoreParams,
    detector_weights,
    hybrid_score,
    img2img_steps,
    needs_train_statistics,
)
from diffad.methods.registry import register_method
from diffad.scoring.outputs import Outputs
from diffad.training.settings import TrainerParams

#: The report's prompts (Sec. 3.1); the notebook's are named variants.
PROMPT = "a flawless {category}"
NEGATIVE_PROMPT = "holes, stains, defects, damaged, distortion"


class SdImg2ImgParams(HybridScoreParams, TrainerParams):
    weights: DiffusersWeights = train("sd15", "diffusers Stable Diffusion pipeline source")
    # LoRA (train tier: one adapter per category, shared by every img2img setting)
    lora: bool = train(False, "train a LoRA of the UNet's attention on the normal images")
    lora_rank: int = train(8, ge=1)
    lora_alpha: float = train(8.0, "LoRA scale numerator (alpha / rank)", gt=0)
    lora_prompt: str = train("photo of mv{category} object", "DreamBooth instance prompt")
    lora_resolution: int = train(512, "side of the training images", ge=8)
    # The LoRA's training on the shared trainer (TrainerParams): DreamBooth's recipe.
    epochs: int = train(1, "unused: `max_steps` sets the LoRA's length", ge=1)
    max_steps: int | None = train(600, "LoRA optimizer steps (DreamBooth's 600)", ge=1)
    batch_size: int = train(1, ge=1)
    grad_accum: int = train(4, ge=1)
    learning_rate: float = train(1e-4, "AdamW", gt=0)
    grad_clip: float | None = train(1.0, "max gradient norm (DreamBooth's max_grad_norm "
                                         "1.0); None: no clipping", gt=0)
    lora_text_attention_mask: bool = train(
        True, "encode the instance prompt with the tokenizer's attention mask (the "
              "notebook's --text_encoder_use_attention_mask); false: SD's pipeline encoding")
    checkpoint_every: int = run(200, "optimizer steps between resumable checkpoints", ge=1)
    # img2img (infer tier: a sweep over these trains nothing)
    prompt: str = infer(PROMPT, "`{category}` is the category's name")
    negative_prompt: str = infer(NEGATIVE_PROMPT)
    strength: float = infer(0.35, "how far the image is noised (report: 0.1-0.7)", gt=0,
                            le=1)
    guidance_scale: float = infer(7.5, "classifier-free guidance (report: 3.5-9)", ge=1)
    steps: int = infer(30, "inference steps of the full schedule (report: 20-50); "
                           "int(steps x strength) of them run", ge=1)
    scheduler: Literal["ddim", "pndm", "dpmsolver"] = infer(
        "ddim", "`ddim` (the report's), `pndm` (SD v1.5's default, the img2img "
                "notebook's), `dpmsolver` (DPM-Solver++ multistep, the LoRA notebook's)")
    generator_seed: int = infer(42, "seed of every batch's noise (the notebook's 42)", ge=0)
    sd_resolution: int = infer(512, "side at which SD reconstructs (images are upscaled "
                                    "and the result resized back)", ge=8)
    clip_weights: OpenClipWeights = infer("clip_vit_b32", "open_clip source of the CLIP term")
    infer_batch_size: int = run(4, "images per img2img batch", ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> SdImg2ImgParams:
        if self.sd_resolution % 8 or self.lora_resolution % 8:
            raise ValueError("sd_resolution and lora_resolution must be multiples of 8 "
                             "(the VAE's downsampling)")
        if img2img_steps(self.steps, self.strength) < 1:
            raise ValueError(f"steps x strength = {self.steps} x {self.strength} runs no "
                             "denoising step")
        return self


@register_method
class SdImg2Img(MethodKind):
    kind = "sd_img2img"
    Params = SdImg2ImgParams
    model = "diffad.methods.sd_img2img.model:SdImg2ImgModel"

    @classmethod
    def requirements(cls, params: SdImg2ImgParams) -> Requirements:
        return Requirements(weights=(params.weights, *detector_weights(params)))

    @classmethod
    def nfe(cls, params: SdImg2ImgParams) -> int:
        # PNDM without its Runge-Kutta warm-up (SD's `skip_prk_steps`) repeats one
        # timestep of its schedule, so img2img runs one UNet step more than DDIM.
        steps = img2img_steps(params.steps, params.strength) + (params.scheduler == "pndm")
        # Guidance evaluates the UNet on the prompt and the negative prompt at every step.
        guided = params.guidance_scale > 1
        return steps * (2 if guided else 1)

    @classmethod
    def fewest_evaluations(cls, params: SdImg2ImgParams) -> dict[str, Any]:
        return {"steps": min(params.steps, FEWEST_STRENGTH_STEPS)}

    @classmethod
    def reconstructs_by_strength(cls, params: SdImg2ImgParams) -> bool:
        return True

    @classmethod
    def needs_train_scores(cls, params: SdImg2ImgParams) -> bool:
        return needs_train_statistics(params)

    @classmethod
    def score(cls, params: SdImg2ImgParams, outputs: Outputs) -> Scored:
        return hybrid_score(params, outputs)


__all__ = ["NEGATIVE_PROMPT", "PROMPT", "SdImg2Img", "SdImg2ImgParams"]
