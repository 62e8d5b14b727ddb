"""VLMDiff (paper 003): caption-conditioned latent diffusion, one model per dataset.

Pipeline (Fig. 2), each stage its own rule with cached outputs:

1. captions: a vision-language model describes every normal train image
   (``captioners:``, :mod:`diffad.captions`; prompt P_D "Describe the main
   object in detail.");
2. autoencoder: SD's kl-f8 ``AutoencoderKL`` finetuned on the dataset's normal
   train images with LDM's recipe (``autoencoders:``, :mod:`diffad.autoencoder`);
3. train (this kind, category ``all``): the SD v1.5 UNet with DiAD's
   conditioning (:mod:`.control`), text by cross-attention on the CLIP
   ViT-L/14 embedding of each image's caption (77 tokens), epsilon loss of
   Eq. 2 on the latents z = 0.18215 E(x), scaled-linear betas 0.00085 to
   0.012, T = 1000, AdamW lr 1e-5, batch 12 with gradient accumulation 4;
4. infer (per category): encode, noise to t = 999, 10 DDIM steps (eta 0)
   without text (industrial data; ``caption_at_inference`` conditions on the
   test image's caption, Table 12 and COCO-AD), decode; anomaly map 1 - cosine
   similarity of the last-layer DINO ViT-S/8 patch features of input and
   reconstruction, bilinear to the image size. One map per listed feature
   extractor (Tables 7 and 13 over one set of reconstructions).

Score tier: the chosen extractor's map, a Gaussian of sigma 5 (the authors'
``gaussian_filter(sigma=5)``), image score the authors' pooling (average pool
k = 8, stride 1, eight times, then the maximum) or the plain maximum.

Where the paper and the authors' code differ (the prompt, ImageNet-normalised
inputs to the autoencoder, the noise level at which DDIM starts), the paper's
wording is documented and the code's choice is the default where the paper is
silent; see docs/protocols/vlmdiff.md.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator, model_validator

from diffad.methods.base import Artefact, MethodKind, Requirements, Scored
from diffad.methods.params import (
    DiffusersWeights,
    MethodParams,
    Weights,
    infer,
    score,
    train,
)
from diffad.methods.registry import register_method
from diffad.scoring.fusion import avg_pool_max, gaussian_smooth
from diffad.scoring.outputs import Outputs
from diffad.training.settings import TrainerParams
from diffad.weights import check_backbone

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(:(?P<layers>-?\d+(,-?\d+)*))?"
                   r"(@(?P<side>\d+))?$")


def extractor_spec(spec: str) -> tuple[str, list[int] | None, int | None]:
    """A ``feature_extractors`` entry ``source[:layers][@side]`` -> (weights source, its
    layers or None for the default, the side it sees or None for ``feature_resolution``):
    ``"resnet50_ram:1,2,3"`` -> ("resnet50_ram", [1, 2, 3], None); ``"dinov2_vits14@224"``
    (paper 003 resizes DINOv2's input to 224)."""
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(f"{spec!r} is not `source[:layer,layer...][@side]`")
    layers = match["layers"]
    return (match["name"], [int(i) for i in layers.split(",")] if layers else None,
            int(match["side"]) if match["side"] else None)


def detector_name(spec: str) -> str:
    """The detector (map) name of a feature extractor: ``cos_<source>[_<layers>][_<side>]``."""
    name, layers, side = extractor_spec(spec)
    return "cos_" + "_".join([name, *map(str, layers or ()), *([str(side)] if side else [])])


def denoising_grid(params: VlmDiffParams) -> list[int]:
    """The DDIM timesteps of a reconstruction, first to last: LDM's uniform grid (diffusers'
    "leading" spacing, offset 1: 901, 801, ..., 1 for 10 of 1000) from ``start_timestep``
    down."""
    step = params.train_timesteps // params.ddim_steps
    grid = [i * step + 1 for i in reversed(range(params.ddim_steps))]
    start = grid[0] if params.start_timestep is None else params.start_timestep
    return [t for t in grid if t <= start]


class VlmDiffParams(MethodParams, TrainerParams):
    multi_class: bool = train(
        True, "one model per dataset (category `all`, the paper's multi-class setting); "
        "False: one per category (COCO-AD's folds, each its own train set)")
    # Upstream artefacts and pretrained networks
    captioner: str | None = train(
        "internvl2_8b", "the `captioners:` entry whose train captions condition training; "
        "None: no text at all (DiAD's setting)")
    autoencoder: str = train(
        "sd15_ft", "the `autoencoders:` entry: its model folder encodes and decodes (its "
        "resolution and input normalisation are the diffusion model's)")
    unet_weights: DiffusersWeights = train("sd15", "diffusers source of the UNet (a "
                                                   "pipeline's `unet`)")
    text_encoder: Weights = train(
        "sd15", "source of the text encoder: a diffusers pipeline's CLIP text tower, or a "
        "transformers model (the default's MiniLM)")
    max_text_tokens: int = train(77, "caption tokens; longer captions are cut (CLIP's 77)", ge=1)
    # Diffusion training (Eq. 2)
    train_timesteps: int = train(1000, "T", ge=2)
    beta_start: float = train(0.00085, "scaled-linear schedule, as SD", gt=0, lt=1)
    beta_end: float = train(0.012, gt=0, lt=1)
    latent_scale: float = train(0.18215, "z = latent_scale * E(x), SD's factor", gt=0)
    # The shared trainer's fields (TrainerParams), these defaults the paper's
    epochs: int = train(300, "paper: 100 (Real-IAD, COCO-AD) and 300 (MVTec AD, VisA)", ge=1)
    batch_size: int = train(12, ge=1)
    grad_accum: int = train(4, ge=1)
    learning_rate: float = train(1e-5, "AdamW", gt=0)
    weight_decay: float = train(0.01, "AdamW's (the authors' code keeps torch's default)",
                                ge=0)
    # Inference
    ddim_steps: int = infer(10, "DDIM steps, eta 0 (the authors' grid 901, 801, ..., 1)", ge=1)
    start_timestep: int | None = infer(
        999, "timestep to which the input latent is noised; the DDIM grid's points up to it "
        "denoise (authors: 999, while the first step, 901, treats the latent as noised to "
        "901); None: noise to the grid's first point", ge=0)
    guidance_scale: float = infer(
        9.0, "classifier-free guidance against the empty text (authors' 9.0); it changes "
        "nothing where the text is empty", ge=1)
    caption_at_inference: bool = infer(
        False, "condition each reconstruction on its test image's caption (Table 12; the "
        "paper's COCO-AD setting)")
    latent_sampling: Literal["sample", "mean"] = infer(
        "sample", "z of a test image: a sample of the encoder's posterior (the authors') or "
        "its mean")
    feature_extractors: list[str] = infer(
        ["dino_vits8"], "one map per extractor: a timm weights source, optionally with "
        "`:<layers>` (`resnet50_ram:1,2,3`) and `@<side>` (`dinov2_vits14@224`); default "
        "layers: a ViT's last block (after its final norm), a CNN's stages 1-3, whose maps "
        "are averaged", min_length=1)
    feature_resolution: int | None = infer(
        None, "side at which the extractors compare input and reconstruction (both resized "
        "alike); None: the autoencoder's resolution", ge=16)
    # Score tier
    detector: str | None = score(
        None, "which extractor's map scores (a `feature_extractors` entry); None: the first")
    sigma: float = score(5.0, "Gaussian smoothing of the map, pixels (authors: 5)", ge=0)
    image_score: Literal["avgpool", "max"] = score(
        "avgpool", "`avgpool`: the authors' average pooling (`pool_kernel`, stride 1, "
        "`pool_times` times) then the maximum; `max`: the maximum pixel")
    pool_kernel: int = score(8, ge=1)
    pool_times: int = score(8, ge=1)

    @field_validator("feature_extractors")
    @classmethod
    def _known_extractors(cls, specs: list[str]) -> list[str]:
        for spec in specs:
            check_backbone(extractor_spec(spec)[0])
        names = [detector_name(spec) for spec in specs]
        if len(set(names)) < len(names):
            raise ValueError(f"two entries give one detector: {specs}")
        if len(set(specs)) < len(specs):
            raise ValueError(f"listed twice: {specs}")
        return specs

    @model_validator(mode="after")
    def _consistent(self) -> VlmDiffParams:
        if self.detector is not None and self.detector not in self.feature_extractors:
            raise ValueError(f"detector: {self.detector!r} is not one of feature_extractors "
                             f"{self.feature_extractors}")
        if self.caption_at_inference and self.captioner is None:
            raise ValueError("caption_at_inference needs a captioner")
        if self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be below beta_end "
                             f"({self.beta_end})")
        if self.start_timestep is not None and self.start_timestep >= self.train_timesteps:
            raise ValueError(f"start_timestep: {self.start_timestep} must be below "
                             f"train_timesteps ({self.train_timesteps})")
        if self.ddim_steps > self.train_timesteps:
            raise ValueError(f"ddim_steps: {self.ddim_steps} exceeds train_timesteps")
        if not denoising_grid(self):
            raise ValueError(f"start_timestep: {self.start_timestep} lies below every DDIM "
                             "step (the last is 1)")
        return self


@register_method
class VlmDiff(MethodKind):
    kind = "vlmdiff"
    Params = VlmDiffParams
    model = "diffad.methods.vlmdiff.model:VlmDiffModel"

    @classmethod
    def per_dataset(cls, params: VlmDiffParams) -> bool:
        return params.multi_class  # one model per dataset (Sec. 3)

    @classmethod
    def requirements(cls, params: VlmDiffParams) -> Requirements:
        weights = [params.unet_weights, params.text_encoder,
                   *(extractor_spec(s)[0] for s in params.feature_extractors)]
        artefacts = [Artefact("autoencoder", params.autoencoder, "autoencoder")]
        if params.captioner is not None:
            artefacts.append(Artefact("captions", params.captioner, "captioner"))
        later = ((Artefact("test_captions", params.captioner, "captioner"),)
                 if params.caption_at_inference else ())
        return Requirements(weights=tuple(dict.fromkeys(weights)), artefacts=tuple(artefacts),
                            infer_artefacts=later)

    @classmethod
    def nfe(cls, params: VlmDiffParams) -> int:
        # Guidance doubles the UNet calls only where there is text to guide with.
        guided = params.caption_at_inference and params.guidance_scale != 1
        return len(denoising_grid(params)) * (2 if guided else 1)

    @classmethod
    def fewest_evaluations(cls, params: VlmDiffParams) -> dict[str, Any]:
        # Two DDIM steps (501, 1 of 1000) from the same start: a step to an intermediate
        # timestep and the final one, the same sampler, conditioning and extractors.
        return {"ddim_steps": min(params.ddim_steps, 2)}

    @classmethod
    def score(cls, params: VlmDiffParams, outputs: Outputs) -> Scored:
        spec = params.detector or params.feature_extractors[0]
        maps = gaussian_smooth(outputs.map(detector_name(spec)), params.sigma)
        if params.image_score == "max":
            scores = maps.reshape(len(maps), -1).max(axis=1).astype("float64")
        else:
            scores = avg_pool_max(maps, params.pool_kernel, params.pool_times)
        return Scored(scores, maps)


__all__ = ["VlmDiff", "VlmDiffParams", "denoising_grid", "detector_name", "extractor_spec"]
