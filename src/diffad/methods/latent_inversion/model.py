"""Paper 001's networks: a feature-space diffusers UNet, its training and DDIM inversion."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from diffad.device import autocast, synchronize
from diffad.io import atomic_path
from diffad.logs import progress
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.latent_inversion import LatentInversion, LatentInversionParams
from diffad.models.ddim import inversion_path, run_ddim, step_grid
from diffad.models.features import FeatureExtractor, cached_features
from diffad.models.noise import image_generators, image_noise
from diffad.models.unet import build_unet2d
from diffad.runtime import Runtime
from diffad.training import Trainer, TrainingSession, iterate_batches

FEATURE_STATS = "feature_stats.safetensors"


class LatentInversionModel(AnomalyModel):
    def __init__(self, params: LatentInversionParams, runtime: Runtime,
                 artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        from diffusers import DDPMScheduler

        self.extractor = FeatureExtractor(params.backbone, params.stages, params.feature_stride,
                                          runtime, params.stage_resize, params.interpolation)
        self.scheduler = DDPMScheduler(
            num_train_timesteps=params.train_timesteps, beta_schedule="linear",
            beta_start=params.beta_start, beta_end=params.beta_end,
            prediction_type="epsilon",
        )
        self.unet = build_unet(params, self.extractor.channels,
                               runtime.image_size // params.feature_stride).to(runtime.device)
        channels = self.extractor.channels
        self.feature_mean = torch.zeros(1, channels, 1, 1)
        self.feature_std = torch.ones(1, channels, 1, 1)

    def num_parameters(self) -> int:
        return (sum(p.numel() for p in self.unet.parameters())
                + sum(p.numel() for p in self.extractor.model.parameters()))

    # ----------------------------------------------------------------- features

    def features(self, paths: list[str], desc: str = "features") -> tuple[torch.Tensor, float]:
        """Backbone features of ``paths`` (cached on disk) and backbone ms per image."""
        return cached_features(self.extractor, paths, self.params.batch_size,
                               self.runtime.cache_dir, desc)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        mean, std = self.feature_mean.to(features.device), self.feature_std.to(features.device)
        return (features - mean) / std

    # ----------------------------------------------------------------- training

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        features, _ = self.features(train["image_path"].tolist(), desc="train features")
        if self.params.feature_normalization == "standardize":
            # Per-channel statistics of the train split: the diffusion model expects
            # unit-scale data like images in [-1, 1] (the official code feeds raw ones).
            self.feature_mean = features.mean(dim=(0, 2, 3), keepdim=True)
            self.feature_std = features.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        return self.train_features(self.normalize(features), session)

    def train_features(self, data: torch.Tensor, session: TrainingSession | None = None
                       ) -> pd.DataFrame:
        """Train the UNet on normalised features ``data`` (Eq. 9) on the shared trainer."""
        from diffusers.optimization import get_cosine_schedule_with_warmup

        p = self.params
        optimizer = torch.optim.AdamW(self.unet.parameters(), lr=p.learning_rate,
                                      weight_decay=p.weight_decay)
        trainer = Trainer(
            {"unet": self.unet}, optimizer,
            p.trainer_settings(self.runtime.seed),
            self.runtime.device, session,
            schedule=lambda opt, total: get_cosine_schedule_with_warmup(
                opt, total * p.warmup_epochs // p.epochs, total),
            fingerprint=repr(p.values("train")),
        )
        return trainer.fit(data, self.epsilon_loss)

    def epsilon_loss(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Eq. 9 with gamma = 1: || eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t) ||^2."""
        device = self.runtime.device
        t = torch.randint(0, self.params.train_timesteps, (len(x0),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = self.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(device)  # Eq. 7
        pred = self.unet(xt, t.to(device)).sample
        return F.mse_loss(pred.float(), noise.to(device))

    # ---------------------------------------------------------------- inference

    def _eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        timestep = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        with autocast(self.runtime.device):
            return self.unet(x, timestep).sample

    @torch.no_grad()
    def invert(self, x0: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """x_T of normalized features ``x0`` by S-step DDIM inversion (Eq. 15)."""
        self.unet.eval()
        path = inversion_path(steps or self.params.steps, self.scheduler.alphas_cumprod,
                              self.params.timestep_spacing)
        return run_ddim(self._eps, x0, path)

    @torch.no_grad()
    def sample(self, xt: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """DDIM sampling (Eq. 12, sigma = 0) from tau_S back to the data, S evaluations."""
        self.unet.eval()
        path = inversion_path(steps or self.params.steps, self.scheduler.alphas_cumprod)
        return run_ddim(self._eps, xt, path[::-1])

    @torch.no_grad()
    def reconstruct(self, x0: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Table 4's baseline: noise x0 to tau_k (Eq. 7) and denoise k DDIM steps; one
        generator per image (:mod:`diffad.models.noise`)."""
        self.unet.eval()
        alphas = self.scheduler.alphas_cumprod
        k = LatentInversion.nfe(self.params)
        grid = step_grid(self.params.steps, len(alphas))[:k]
        path = [(0, 1.0)] + [(t, float(alphas[t])) for t in grid]
        noise = image_noise(x0.shape, generators, x0.device)
        alpha = path[-1][1]
        xt = alpha**0.5 * x0 + (1 - alpha) ** 0.5 * noise
        return run_ddim(self._eps, xt, path[::-1])

    @torch.no_grad()
    def predict_features(self, features: torch.Tensor, image_size: int,
                         paths: list[str] | None = None) -> Prediction:
        """Every detector of raw backbone ``features`` on ``runtime.device``; ``paths`` (the
        images', for their reconstruction noise) default to the batch positions."""
        x0 = self.normalize(features)
        if self.params.mode == "reconstruction":
            paths = paths if paths is not None else [str(i) for i in range(len(x0))]
            x0_hat = self.reconstruct(x0, image_generators(self.runtime.seed, paths))
            error = (x0_hat.float() - x0).pow(2).mean(dim=1, keepdim=True)
            return Prediction(scores={"error": error.flatten(1).amax(1).cpu().numpy()},
                              maps={"error": upsample(error, image_size).cpu().numpy()})
        xt = self.invert(x0).float()
        norm = xt.norm(dim=1, keepdim=True)
        spread = norm.flatten(1).amax(1) - norm.flatten(1).amin(1)
        return Prediction(scores={"nll": gaussian_nll(xt).cpu().numpy(),
                                  "norm": spread.cpu().numpy()},
                          maps={"norm": upsample(norm, image_size).cpu().numpy()})

    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        paths = rows["image_path"].tolist() if rows is not None and "image_path" in rows else None
        return self.predict_features(self.extractor(images), images.shape[-1], paths)

    def infer(self, rows: pd.DataFrame) -> Iterator[Prediction]:
        # Features come from the cache shared by all variants of this backbone; the
        # backbone's own time, measured when they were extracted, is added to each
        # image's latency.
        paths = rows["image_path"].tolist()
        features, backbone_ms = self.features(paths, desc="features")
        size = self.params.infer_batch_size
        batches = list(iterate_batches(features, size))
        device = self.runtime.device
        self.predict_features(batches[0][:1].to(device), self.runtime.image_size,
                              paths[:1])  # warm-up on one image, untimed
        for i, batch in enumerate(progress(batches, desc="inference", unit="batch")):
            batch = batch.to(device)
            synchronize(device)
            start = time.perf_counter()
            prediction = self.predict_features(batch, self.runtime.image_size,
                                               paths[i * size:(i + 1) * size])
            synchronize(device)
            prediction.latency_ms = backbone_ms + 1000 * (time.perf_counter() - start) / len(batch)
            yield prediction

    # ----------------------------------------------------------------- storage

    def save_networks(self, folder: Path) -> None:
        self.unet.save_pretrained(Path(folder) / "unet")
        self.scheduler.save_pretrained(Path(folder) / "scheduler")
        with atomic_path(Path(folder) / FEATURE_STATS) as tmp:
            save_file({"mean": self.feature_mean.contiguous(),
                       "std": self.feature_std.contiguous()}, str(tmp))

    def load_networks(self, folder: Path) -> None:
        from diffusers import UNet2DModel

        self.unet = UNet2DModel.from_pretrained(Path(folder) / "unet").to(self.runtime.device)
        stats = load_file(str(Path(folder) / FEATURE_STATS))
        self.feature_mean, self.feature_std = stats["mean"], stats["std"]


def build_unet(params: LatentInversionParams, channels: int, sample_size: int):
    """The diffusers UNet2DModel of ``params`` for ``channels`` x ``sample_size``^2 features."""
    return build_unet2d(channels, sample_size, params.block_out_channels,
                        params.layers_per_block, params.attention_levels)


def gaussian_nll(x: torch.Tensor) -> torch.Tensor:
    """-log N(x; 0, I) per sample, summed over every dimension but the first."""
    flat = x.float().flatten(1)
    return 0.5 * flat.pow(2).sum(1) + 0.5 * flat.shape[1] * math.log(2 * math.pi)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, h, w) -> (B, size, size), bilinear."""
    return F.interpolate(maps.float(), size=(size, size), mode="bilinear",
                         align_corners=False)[:, 0]


__all__ = ["LatentInversionModel", "build_unet", "gaussian_nll", "upsample"]
