"""Paper 000's model: SD v1.5 img2img reconstructions, optionally through a LoRA."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from diffad.data.image_cache import IndexedImages
from diffad.device import mixed_precision_dtype
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.sd_img2img import SdImg2ImgParams
from diffad.models.noise import image_generators
from diffad.models.posterior import Posteriors
from diffad.models.reconstruction import ReconstructionDetectors
from diffad.models.resize import resize
from diffad.runtime import Runtime
from diffad.training import Trainer, TrainingSession
from diffad.weights import load_diffusers, stored_parameters

#: diffusers' LoRA file in a model folder (``save_lora_weights`` / ``load_lora_weights``).
LORA_FILE = "pytorch_lora_weights.safetensors"
#: The attention projections the DreamBooth LoRA script adapts.
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


@torch.no_grad()
def instance_prompt_embedding(pipe, prompt: str, attention_mask: bool) -> torch.Tensor:
    """The (1, 77, width) embedding DreamBooth's script trains on: the prompt padded to the
    tokenizer's length; with ``attention_mask`` (``--text_encoder_use_attention_mask``) the
    padding positions attend to the prompt's tokens only. CLIP's causal mask already hides
    the padding from the prompt's own positions, so only the padding rows change, and the
    UNet's cross-attention reads all 77. Without it: what SD's pipeline encodes."""
    tokens = pipe.tokenizer(prompt, padding="max_length", truncation=True,
                            max_length=pipe.tokenizer.model_max_length, return_tensors="pt")
    device = pipe.text_encoder.device
    mask = tokens.attention_mask.to(device) if attention_mask else None
    return pipe.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


class SdImg2ImgModel(AnomalyModel):
    def __init__(self, params: SdImg2ImgParams, runtime: Runtime,
                 artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        self.category: str | None = None
        self.lora_folder: Path | None = None
        self._pipe = None
        self.detectors = ReconstructionDetectors(params.clip_weights, runtime,
                                                 params.perceptual_weights)
        self._lora_state: dict[str, torch.Tensor] | None = None
        self._lora_config: dict | None = None

    # ------------------------------------------------------------------ parts

    def pipeline(self):
        """The img2img pipeline: fp16 on CUDA, its scheduler, the LoRA fused in."""
        if self._pipe is None:
            from diffusers import (
                DDIMScheduler,
                DPMSolverMultistepScheduler,
                PNDMScheduler,
                StableDiffusionImg2ImgPipeline,
            )

            dtype = torch.float16 if mixed_precision_dtype(self.runtime.device) else None
            pipe = load_diffusers(self.params.weights, self.runtime.weights_root,
                                  cls=StableDiffusionImg2ImgPipeline,
                                  **({"torch_dtype": dtype} if dtype else {}))
            scheduler = {"ddim": DDIMScheduler, "pndm": PNDMScheduler,
                         "dpmsolver": DPMSolverMultistepScheduler}[self.params.scheduler]
            pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
            if self.lora_folder is not None:
                pipe.load_lora_weights(str(self.lora_folder), weight_name=LORA_FILE)
                pipe.fuse_lora()
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(self.runtime.device)
        return self._pipe

    # ----------------------------------------------------------------- training

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        self.category = str(train["category"].iloc[0])
        if not self.params.lora:
            return pd.DataFrame({"step": pd.Series([], dtype=int),
                                 "loss": pd.Series([], dtype=float)})
        return self.fit_lora(train, session)

    def fit_lora(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        """DreamBooth without prior preservation: epsilon MSE of the UNet with a LoRA on
        its attention, on the VAE latents of the normal images, one instance prompt."""
        from diffusers import DDPMScheduler, StableDiffusionPipeline
        from peft import LoraConfig

        p, device = self.params, self.runtime.device
        pipe = load_diffusers(p.weights, self.runtime.weights_root, cls=StableDiffusionPipeline)
        unet, vae = pipe.unet.to(device), pipe.vae.to(device).eval()
        noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
        unet.requires_grad_(False)
        vae.requires_grad_(False)
        config = LoraConfig(r=p.lora_rank, lora_alpha=p.lora_alpha,
                            init_lora_weights="gaussian", target_modules=LORA_TARGETS)
        unet.add_adapter(config)
        self._lora_config = config.to_dict()
        # The prompt's embedding once (the script's --pre_compute_text_embeddings), by the
        # text encoder where it was loaded (the CPU), then moved to the UNet's device.
        text = instance_prompt_embedding(pipe, p.lora_prompt.format(category=self.category),
                                         p.lora_text_attention_mask).to(device)
        trainable = [q for q in unet.parameters() if q.requires_grad]
        trainer = Trainer(
            {"unet": unet}, torch.optim.AdamW(trainable, lr=p.learning_rate,
                                             weight_decay=1e-2),
            p.trainer_settings(self.runtime.seed),
            device, session, fingerprint=repr((p.values("train"), self.category)))
        scale = vae.config.scaling_factor

        images = IndexedImages(train["image_path"].tolist(), p.lora_resolution,
                               self.runtime.cache_dir, self.runtime.num_workers)

        def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            posterior = vae.encode(x.to(device) * 2 - 1).latent_dist
            return posterior.mean, posterior.std

        # The frozen VAE's posterior of each image, encoded once (the same draws after).
        posteriors = Posteriors(encode, images, p.batch_size)

        def loss(batch, generator: torch.Generator) -> torch.Tensor:
            _, rows = batch
            latents = posteriors.sample([int(i) for i in rows], generator, device) * scale
            t = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(latents),),
                              generator=generator).to(device)
            eps = torch.randn(latents.shape, generator=generator).to(device)
            noisy = noise_schedule.add_noise(latents, eps, t)
            pred = unet(noisy, t, encoder_hidden_states=text.expand(len(latents), -1, -1)).sample
            return F.mse_loss(pred.float(), eps)

        curve = trainer.fit(images, loss)
        from peft.utils import get_peft_model_state_dict

        self._lora_state = {k: v.detach().cpu().contiguous()
                            for k, v in get_peft_model_state_dict(unet).items()}
        return curve

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def reconstruct_images(self, images: torch.Tensor, rows: pd.DataFrame) -> torch.Tensor:
        """img2img reconstructions of (B, 3, H, W) images in [0, 1], at their size."""
        p = self.params
        category = str(rows["category"].iloc[0])
        # One generator per image: the pipeline draws each image's noise from its own.
        generators = image_generators(p.generator_seed, rows["image_path"].tolist())
        out = self.pipeline()(
            prompt=[p.prompt.format(category=category)] * len(images),
            negative_prompt=[p.negative_prompt] * len(images),
            image=resize(images, p.sd_resolution), strength=p.strength,
            guidance_scale=p.guidance_scale, num_inference_steps=p.steps,
            generator=generators, output_type="pt")
        return resize(out.images.float().to(images.device), images.shape[-1])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        reconstructions = self.reconstruct_images(images, rows)
        scores, maps = self.detectors(images, reconstructions)
        return Prediction(scores=scores, maps=maps)

    # ----------------------------------------------------------------- storage

    def num_parameters(self) -> int:
        """The UNet's, VAE's and text encoder's (a fused LoRA adds none)."""
        return stored_parameters(self.params.weights, self.runtime.weights_root,
                                 ("unet", "vae", "text_encoder"))

    def save_networks(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._lora_state is not None:
            from diffusers import StableDiffusionPipeline
            from diffusers.utils import convert_state_dict_to_diffusers

            # The adapter's config goes into the file's metadata: without it diffusers
            # reloads the LoRA with alpha = rank, i.e. at scale 1 instead of alpha / rank.
            StableDiffusionPipeline.save_lora_weights(
                folder, unet_lora_layers=convert_state_dict_to_diffusers(self._lora_state),
                weight_name=LORA_FILE, unet_lora_adapter_metadata=self._lora_config)

    def load_networks(self, folder: Path) -> None:
        if self.params.lora:
            self.lora_folder = Path(folder)


__all__ = ["LORA_FILE", "SdImg2ImgModel", "instance_prompt_embedding"]
