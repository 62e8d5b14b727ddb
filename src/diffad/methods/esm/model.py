"""Paper 002's networks: the dual-stream UNet, its MLE loss, the three samplers, the detectors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from diffad.data.loader import image_batches
from diffad.device import autocast
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.esm import SINGLE_STREAM, EsmParams
from diffad.models.feature_similarity import IntermediateFeatures, cosine_distance_map
from diffad.models.noise import image_generators, image_noise
from diffad.models.resize import resize, upsample_maps
from diffad.models.unet import build_unet2d
from diffad.runtime import Runtime
from diffad.training import Trainer, TrainingSession

#: (x_t, t) -> (eps_t, sigma_t^2); sigma_t^2 is None for a single-stream (DSM) model.
DualStream = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def build_stream(params: EsmParams):
    """One stream: a diffusers UNet2DModel on 3-channel images at ``resolution``."""
    return build_unet2d(3, params.resolution, params.block_out_channels,
                        params.layers_per_block, params.attention_levels)


def mle_loss(noise: torch.Tensor, eps: torch.Tensor, variance: torch.Tensor,
             alpha_bar: torch.Tensor) -> torch.Tensor:
    """Eq. 10: (1 - abar_t)(eps_bar - eps_t)^2 / sigma_t^2 + log sigma_t^2, averaged.

    With mu_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps_t this is -2 log N(X_t; mu_t,
    sigma_t^2) (Eq. 9) without its constant log(2 pi).
    """
    a = alpha_bar.view(-1, 1, 1, 1)
    return ((1 - a) * (noise - eps).pow(2) / variance + variance.log()).mean()


def eq5_step(x: torch.Tensor, eps: torch.Tensor, variance: torch.Tensor | float,
             beta: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """One step of Eq. 5, dx = -beta(t) (x / 2 - (x - mu_t) / sigma_t^2) dt, backwards over
    dt = 1 with x - mu_t read as sqrt(1 - abar_t) eps_t: x + beta_t (x / 2 - sqrt(1 -
    abar_t) eps_t / sigma_t^2). ESM's sigma_t^2 is the network's (Eq. 3); DSM's is
    1 - abar_t (Eq. 4), which turns the step into x + beta_t (x / 2 - eps_t /
    sqrt(1 - abar_t)), the noiseless first-order DDPM step: the score weighted by 1."""
    return x + beta * (x / 2 - (1 - alpha_bar).sqrt() * eps / variance)


def guidance_dt(beta: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The time increment of the variance-guided process at step t, beta_t / (1 - abar_t):
    with it sigma_t^2 = 1 - abar_t (DSM's variance) turns Eqs. 11 and 13 into the DDPM
    forward step and the ``sgm`` step (the paper leaves the discretisation open)."""
    return beta / (1 - alpha_bar)


def eq11_step(x: torch.Tensor, variance: torch.Tensor, noise: torch.Tensor,
              dt: torch.Tensor) -> torch.Tensor:
    """One Euler-Maruyama step of Eq. 11, dx = -sigma_t^2 / 2 x dt + sigma_t dw, forward:
    x - sigma^2 dt x / 2 + sqrt(sigma^2 dt) xi."""
    return x - variance * dt * x / 2 + (variance * dt).sqrt() * noise


def eq13_step(x: torch.Tensor, eps: torch.Tensor, variance: torch.Tensor,
              dt: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """One step of Eq. 13, dx = (-x / 2 sigma_t^2 + x - mu_t) dt, backwards over dt with
    x - mu_t read as sqrt(1 - abar_t) eps_t: x + dt (sigma^2 x / 2 - sqrt(1 - abar_t) eps_t).
    The variance sits in the numerator (Sec. 3.4): a small one slows only the x / 2 term."""
    return x + dt * (variance * x / 2 - (1 - alpha_bar).sqrt() * eps)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
              alpha_bar_prev: torch.Tensor) -> torch.Tensor:
    """DDIM with eta = 0 (the probability-flow ODE, which weights the score by 1/2)."""
    x0_hat = (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    return alpha_bar_prev.sqrt() * x0_hat + (1 - alpha_bar_prev).sqrt() * eps


class EsmModel(AnomalyModel):
    def __init__(self, params: EsmParams, runtime: Runtime, artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        from diffusers import DDPMScheduler

        self.scheduler = DDPMScheduler(
            num_train_timesteps=params.train_timesteps, beta_schedule="linear",
            beta_start=params.beta_start, beta_end=params.beta_end)
        self.mean_stream = build_stream(params).to(runtime.device)
        self.variance_stream = (build_stream(params).to(runtime.device)
                                if params.objective == "mle" else None)
        self._features: IntermediateFeatures | None = None

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        nets = {"mean_stream": self.mean_stream}
        if self.variance_stream is not None:
            nets["variance_stream"] = self.variance_stream
        return nets

    def num_parameters(self) -> int:
        return sum(p.numel() for net in self.networks.values() for p in net.parameters())

    # ------------------------------------------------------------------ network

    def streams(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """eps_t and sigma_t^2 (floored) of the dual-stream network at (x, t)."""
        with autocast(self.runtime.device):
            eps = self.mean_stream(x, t).sample.float()
            if self.variance_stream is None:
                return eps, None
            log_variance = self.variance_stream(x, t).sample.float()
        return eps, self.params.variance_floor + log_variance.exp()

    def variance(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """sigma_t^2 alone (the variance stream), floored."""
        with autocast(self.runtime.device):
            log_variance = self.variance_stream(x, t).sample.float()
        return self.params.variance_floor + log_variance.exp()

    # ----------------------------------------------------------------- training

    def images(self, rows: pd.DataFrame, desc: str) -> torch.Tensor:
        """(N, 3, r, r) uint8 images at ``resolution`` (a quarter of float32's memory)."""
        size = self.params.resolution
        out = []
        for batch in image_batches(rows["image_path"].tolist(), self.runtime,
                                   self.params.batch_size, desc=desc):
            batch = resize(batch, size)
            out.append((batch.clamp(0, 1) * 255).round().to(torch.uint8))
        return torch.cat(out)

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        p = self.params
        data = self.images(train, "train images")
        parameters = [q for net in self.networks.values() for q in net.parameters()]
        trainer = Trainer(
            self.networks, torch.optim.Adam(parameters, lr=p.learning_rate),
            p.trainer_settings(self.runtime.seed),
            self.runtime.device, session, fingerprint=repr(p.values("train")))
        return trainer.fit(data, self.loss)

    def loss(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        device = self.runtime.device
        x0 = batch.float() / 127.5 - 1  # [-1, 1], as DDPM
        t = torch.randint(0, self.params.train_timesteps, (len(x0),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = self.scheduler.alphas_cumprod[t]
        xt = self.scheduler.add_noise(x0, noise, t)  # DDPM's q(x_t | x_0)
        eps, variance = self.streams(xt.to(device), t.to(device))
        if variance is None:
            return F.mse_loss(eps, noise.to(device))
        return mle_loss(noise.to(device), eps, variance, a.to(device))

    # ---------------------------------------------------------------- inference

    def _timestep(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return torch.full((len(x),), max(t, 0), device=x.device, dtype=torch.long)

    @torch.no_grad()
    def reconstruct(self, x0: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Noise ``x0`` ([-1, 1]) to T_d (index T_d - 1) and denoise with the sampler; one
        generator per image (:mod:`diffad.models.noise`)."""
        alphas = self.scheduler.alphas_cumprod.to(x0.device)
        betas = self.scheduler.betas.to(x0.device)
        start = self.params.t_d - 1
        sampler = self.params.sampler
        forward = sampler == "esm_sigma" and self.params.variance_guidance == "forward"
        if forward:
            x = self.variance_guided_diffusion(x0, generators)
        else:
            noise = image_noise(x0.shape, generators, x0.device)
            x = self.scheduler.add_noise(x0, noise, self._timestep(x0, start))
        for t in range(start, -1, -1):
            a_t = alphas[t]
            a_prev = alphas[t - 1] if t > 0 else torch.ones_like(a_t)
            if sampler in SINGLE_STREAM:
                # DSM needs no variance: the mean stream alone.
                with autocast(self.runtime.device):
                    eps = self.mean_stream(x, self._timestep(x, t)).sample.float()
            else:
                eps, variance = self.streams(x, self._timestep(x, t))
            if sampler == "sgm":
                x = eq5_step(x, eps, 1 - a_t, betas[t], a_t)  # Eq. 5 with Eq. 4's 1 - abar_t
            elif sampler == "sgm_ddim":
                x = ddim_step(x, eps, a_t, a_prev)
            elif sampler == "esm":
                x = eq5_step(x, eps, variance, betas[t], a_t)  # Eq. 5 with Eq. 3's sigma_t^2
            elif forward:
                x = eq13_step(x, eps, variance, guidance_dt(betas[t], a_t), a_t)
            else:
                x = self.variance_guided_step(x, t, eps, variance, betas[t], a_t)
        return x

    def variance_guided_diffusion(self, x0: torch.Tensor,
                                  generators: list[torch.Generator]) -> torch.Tensor:
        """Eq. 11 from x_0 to T_d (index T_d - 1): at each step the variance stream's
        sigma_t^2 of the current image sets the step's drift and noise (Sec. 3.4: the
        network's variance rather than Eq. 12's solution); one image-seeded draw per step."""
        alphas = self.scheduler.alphas_cumprod.to(x0.device)
        betas = self.scheduler.betas.to(x0.device)
        x = x0
        for t in range(self.params.t_d):
            variance = self.variance(x, self._timestep(x, t))
            noise = image_noise(x.shape, generators, x.device)
            x = eq11_step(x, variance, noise, guidance_dt(betas[t], alphas[t]))
        return x

    def variance_guided_step(self, x: torch.Tensor, t: int, eps: torch.Tensor,
                             variance: torch.Tensor, beta: torch.Tensor,
                             alpha_bar: torch.Tensor) -> torch.Tensor:
        """``variance_guidance: proposal``: Eq. 13 over one step, sigma^2 re-estimated at
        the proposed x_{t-1} and the step retaken with the mean of the two variances."""
        dt = guidance_dt(beta, alpha_bar)
        proposal = eq13_step(x, eps, variance, dt, alpha_bar)
        again = self.variance(proposal, self._timestep(x, t - 1))
        return eq13_step(x, eps, (variance + again) / 2, dt, alpha_bar)

    def features(self) -> IntermediateFeatures:
        if self._features is None:
            self._features = IntermediateFeatures(self.params.feature_backbone,
                                                  self.params.feature_layers, self.runtime)
        return self._features

    @torch.no_grad()
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        size, r = images.shape[-1], self.params.resolution
        small = resize(images, r)
        x0 = small * 2 - 1
        generators = image_generators(self.runtime.seed, rows["image_path"].tolist())
        x_hat = self.reconstruct(x0, generators)
        side = self.params.feature_resolution or r
        maps = {
            "cos": cosine_distance_map(self.features(), resize(small, side),
                                       resize(((x_hat + 1) / 2).clamp(0, 1), side), r),
            "re": (x0 - x_hat).pow(2).mean(dim=1),
        }
        if self.variance_stream is not None:
            # sigma_0^2 of Sec. 3.5 at t = 0 by default. There the MLE variance, abar_t
            # times the squared x_0 error of the mean stream, sits at the floor, and S_U
            # and S_KL become multiples of S_RE; `variance_timestep` reads it later.
            var_input, var_recon = self.variances_at(x0, x_hat, generators)
            error = (x0 - x_hat).pow(2)
            maps["u"] = (error / var_recon).mean(dim=1)
            # KL(N(x, s_in^2) || N(x_hat, s_rec^2)) per pixel (ADSPR), channel mean.
            maps["kl"] = 0.5 * ((var_recon / var_input).log()
                                + (var_input + error) / var_recon - 1).mean(dim=1)
        maps = {name: upsample_maps(m, size).cpu().numpy() for name, m in maps.items()}
        k = min(250, size * size)
        scores = {name: np.sort(m.reshape(len(m), -1), axis=1)[:, -k:].mean(axis=1)
                  for name, m in maps.items()}
        # Each map's extremes, for normalization by the train split's range (score tier).
        for name, m in maps.items():
            scores[f"{name}_min"], scores[f"{name}_max"] = m.min(axis=(1, 2)), m.max(axis=(1, 2))
        return Prediction(scores=scores, maps=maps)

    def variances_at(self, x0: torch.Tensor, x_hat: torch.Tensor,
                     generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma^2 of the input and of the reconstruction at `variance_timestep`. Above 0
        both are first noised to that step with one image-seeded draw shared by the two,
        as the variance stream saw its inputs in training (x_t, not x_0, at step t)."""
        t = self.params.variance_timestep
        timestep = self._timestep(x0, t)
        if t > 0:
            noise = image_noise(x0.shape, generators, x0.device)
            x0, x_hat = (self.scheduler.add_noise(x, noise, timestep) for x in (x0, x_hat))
        return self.variance(x0, timestep), self.variance(x_hat, timestep)

    def eval(self) -> None:
        self.mean_stream.eval()
        if self.variance_stream is not None:
            self.variance_stream.eval()

    # ----------------------------------------------------------------- storage

    def save_networks(self, folder: Path) -> None:
        for name, net in self.networks.items():
            net.save_pretrained(Path(folder) / name)
        self.scheduler.save_pretrained(Path(folder) / "scheduler")

    def load_networks(self, folder: Path) -> None:
        from diffusers import UNet2DModel

        self.mean_stream = UNet2DModel.from_pretrained(Path(folder) / "mean_stream").to(
            self.runtime.device)
        if self.params.objective == "mle":
            self.variance_stream = UNet2DModel.from_pretrained(
                Path(folder) / "variance_stream").to(self.runtime.device)


__all__ = ["EsmModel", "build_stream", "ddim_step", "eq5_step", "eq11_step", "eq13_step",
           "guidance_dt", "mle_loss"]
