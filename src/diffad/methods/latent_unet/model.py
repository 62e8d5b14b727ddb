"""Paper 000's first pipeline: a small diffusion UNet on SD latents (or, the notebook's
variant, on pixels), reconstructing test images from a partial noising."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from diffad.autoencoder import denormalize, normalize
from diffad.data.loader import image_batches
from diffad.device import autocast
from diffad.errors import ConfigError
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.latent_unet import LatentUnetParams
from diffad.methods.reconstruction import img2img_steps
from diffad.models.noise import image_generators, image_noise
from diffad.models.reconstruction import ReconstructionDetectors
from diffad.models.resize import resize
from diffad.models.unet import build_unet2d
from diffad.runtime import Runtime
from diffad.training import Trainer, TrainingSession
from diffad.weights import load_diffusers_component


class LatentUnetModel(AnomalyModel):
    def __init__(self, params: LatentUnetParams, runtime: Runtime,
                 artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        from diffusers import DDIMScheduler, DDPMScheduler

        self.noise_schedule = DDPMScheduler(
            num_train_timesteps=params.train_timesteps, beta_schedule=params.beta_schedule,
            beta_start=params.beta_start, beta_end=params.beta_end, clip_sample=False)
        self.sampler = DDIMScheduler.from_config(self.noise_schedule.config, steps_offset=1,
                                                 set_alpha_to_one=False)
        self.unet = None
        self._vae = None
        #: how images enter the VAE: SD's [-1, 1], or the finetuned autoencoder's own
        self.normalization = "symmetric"
        self.detectors = ReconstructionDetectors(params.clip_weights, runtime,
                                                 params.perceptual_weights)

    # ------------------------------------------------------------------ parts

    @property
    def channels(self) -> int:
        return 4 if self.params.space == "latent" else 3

    @property
    def sample_size(self) -> int:
        p = self.params
        return p.resolution // 8 if p.space == "latent" else p.resolution

    def vae(self):
        """The frozen AutoencoderKL: the `autoencoder` artefact's, else `vae_weights`'."""
        if self._vae is None:
            p = self.params
            if p.autoencoder is not None:
                from diffad.autoencoder import load_autoencoder

                folder = Path(self.artefacts["autoencoder"][p.autoencoder][0])
                vae, info = load_autoencoder(folder, self.runtime.device)
                if info.resolution != p.resolution:
                    raise ConfigError(f"resolution: {p.resolution} differs from autoencoder "
                                      f"{p.autoencoder!r}'s {info.resolution}")
                self.normalization = info.normalization
            else:
                vae = load_diffusers_component(p.vae_weights, self.runtime.weights_root,
                                               "AutoencoderKL", "vae")
            self._vae = vae.to(self.runtime.device).eval().requires_grad_(False)
        return self._vae

    def build_unet(self):
        p = self.params
        if p.unet_weights is not None:
            return load_diffusers_component(p.unet_weights, self.runtime.weights_root,
                                            "UNet2DModel", "unet")
        return build_unet2d(self.channels, self.sample_size, p.block_out_channels,
                            p.layers_per_block, p.attention_levels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE posterior of (B, 3, H, W) images in [0, 1], scaled by
        the VAE's factor (latent space); (images in [-1, 1], zeros) in pixel space."""
        small = resize(images, self.params.resolution)
        if self.params.space == "pixel":
            x = small * 2 - 1
            return x, torch.zeros_like(x)
        vae = self.vae()
        x = normalize(small, self.normalization)
        with autocast(self.runtime.device):
            posterior = vae.encode(x).latent_dist
        scale = vae.config.scaling_factor
        return scale * posterior.mean.float(), scale * posterior.std.float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from latents (or pixels in [-1, 1])."""
        if self.params.space == "pixel":
            return ((z + 1) / 2).clamp(0, 1)
        vae = self.vae()
        with autocast(self.runtime.device):
            x = vae.decode(z / vae.config.scaling_factor).sample.float()
        return denormalize(x, self.normalization).clamp(0, 1)

    # ----------------------------------------------------------------- training

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        p, device = self.params, self.runtime.device
        self.unet = self.build_unet().to(device)
        # The frozen VAE's posteriors once; the trainer samples them per step.
        means, stds = [], []
        for batch in image_batches(train["image_path"].tolist(), self.runtime, p.batch_size,
                                   desc="encode train images"):
            mean, std = self.encode(batch.to(device))
            means.append(mean.cpu())
            stds.append(std.cpu())
        data = torch.stack([torch.cat(means), torch.cat(stds)], dim=1)  # (N, 2, C, h, w)
        trainer = Trainer(
            {"unet": self.unet}, torch.optim.AdamW(self.unet.parameters(), lr=p.learning_rate),
            p.trainer_settings(self.runtime.seed),
            device, session, fingerprint=repr(p.values("train")))

        def loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            mean, std = batch[:, 0], batch[:, 1]
            z = mean + std * torch.randn(mean.shape, generator=generator)
            t = torch.randint(0, p.train_timesteps, (len(z),), generator=generator)
            eps = torch.randn(z.shape, generator=generator)
            noisy = self.noise_schedule.add_noise(z, eps, t)
            pred = self.unet(noisy.to(device), t.to(device)).sample
            return F.mse_loss(pred.float(), eps.to(device))

        return trainer.fit(data, loss)

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor,
                    generators: list[torch.Generator]) -> torch.Tensor:
        p, device = self.params, self.runtime.device
        z, _ = self.encode(images)
        if p.start == "clean":
            # The notebook: from the clean input, DDPM's stochastic step t -> t - 1 at each of
            # round(linspace(999, 0, 250)) (it never calls set_timesteps).
            grid = torch.linspace(p.train_timesteps - 1, 0, p.sample_steps).round().long()
            for t in grid.tolist():
                eps = self.unet(z, torch.full((len(z),), t, device=device)).sample
                # A list of generators: diffusers draws each image's noise from its own.
                z = self.noise_schedule.step(eps, t, z, generator=generators).prev_sample
            return self.decode(z)
        self.sampler.set_timesteps(p.steps)
        timesteps = self.sampler.timesteps[p.steps - img2img_steps(p.steps, p.strength):]
        noise = image_noise(z.shape, generators, device)
        z = self.noise_schedule.add_noise(z, noise, timesteps[:1].repeat(len(z)).to(device))
        for t in timesteps:
            with autocast(device):
                eps = self.unet(z, t.to(device).repeat(len(z))).sample.float()
            z = self.sampler.step(eps, t, z).prev_sample
        return self.decode(z)

    @torch.no_grad()
    def reconstruct_images(self, images: torch.Tensor, rows: pd.DataFrame) -> torch.Tensor:
        """Reconstructions of (B, 3, H, W) images in [0, 1], at their size."""
        self.unet.eval()
        generators = image_generators(self.params.generator_seed, rows["image_path"].tolist())
        return resize(self.reconstruct(images, generators), images.shape[-1])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        recon = self.reconstruct_images(images, rows)
        scores, maps = self.detectors(images, recon)
        return Prediction(scores=scores, maps=maps)

    def eval(self) -> None:
        self.unet.eval()

    # ----------------------------------------------------------------- storage

    def num_parameters(self) -> int:
        count = sum(q.numel() for q in self.unet.parameters())
        if self.params.space == "latent":
            count += sum(q.numel() for q in self.vae().parameters())
        return count

    def save_networks(self, folder: Path) -> None:
        self.unet.save_pretrained(Path(folder) / "unet")
        self.noise_schedule.save_pretrained(Path(folder) / "scheduler")

    def load_networks(self, folder: Path) -> None:
        from diffusers import UNet2DModel

        self.unet = UNet2DModel.from_pretrained(Path(folder) / "unet").to(self.runtime.device)


__all__ = ["LatentUnetModel"]
