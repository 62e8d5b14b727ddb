"""Finetune a kl-f8 AutoencoderKL with LDM's recipe on the shared trainer; save and load it.

:func:`finetune_autoencoder` loads the pretrained VAE of a diffusers weights
source (a pipeline's ``vae/`` or a single ``AutoencoderKL``), trains it on
the normal train images with :class:`~diffad.autoencoder.loss.AutoencoderLoss`
and a :class:`~diffad.models.discriminator.PatchDiscriminator` (paper 003's
recipe, :mod:`diffad.autoencoder.params`), and writes the model folder::

    <out_dir>/
        vae/            AutoencoderKL.save_pretrained (config.json, safetensors)
        config.json     name, params, scaling_factor, normalization, resolution, finetuned
        loss.parquet    step, epoch, loss, lr, seconds and the loss parts rec, kl, g, d,
                        d_weight (mean over the step's micro-batches); no rows when the
                        pretrained VAE is kept as is (``finetune: false``)

The caller writes ``metadata.json`` last, from the dict returned. Training is
resumable: the trainer checkpoints in the session's folder, and the loss parts
of the steps done are kept beside it (``loss_parts.partial.json``) until the
run ends. :func:`load_autoencoder` reads the folder back, frozen, for the
diffusion model that works in its latent space, with :func:`normalize` /
:func:`denormalize` between [0, 1] images and the VAE's pixel space.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from diffad.autoencoder.loss import PARTS, AutoencoderLoss, LossWeights
from diffad.autoencoder.params import AutoencoderParams, Normalization, denormalize, normalize
from diffad.data.image_cache import CachedImages
from diffad.io import write_json, write_parquet
from diffad.models.discriminator import PatchDiscriminator
from diffad.models.perceptual import LPIPS
from diffad.runtime import Runtime
from diffad.tiers import without_run
from diffad.training import Trainer, TrainerSettings, TrainingSession
from diffad.training.cost import step_cost
from diffad.weights import hub_offline, load_diffusers_component

log = logging.getLogger(__name__)

VAE_FOLDER = "vae"
CONFIG_FILE = "config.json"
LOSS_FILE = "loss.parquet"
#: The loss parts of the steps done, kept while a run may still resume.
PARTS_FILE = "loss_parts.partial.json"
CURVE_COLUMNS = ["step", "epoch", "loss", "lr", "seconds", *PARTS]
#: LDM's Adam betas for both the autoencoder and the discriminator.
ADAM_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class AutoencoderInfo:
    """What a diffusion model needs to know about a saved autoencoder."""

    name: str
    normalization: Normalization
    resolution: int
    scaling_factor: float
    finetuned: bool


def load_pretrained_vae(weights: str, runtime: Runtime) -> Any:
    """The ``AutoencoderKL`` of diffusers source ``weights`` (a pipeline's ``vae/``)."""
    return load_diffusers_component(weights, runtime.weights_root, "AutoencoderKL", VAE_FOLDER)


def finetune_autoencoder(params: AutoencoderParams, name: str, rows: pd.DataFrame,
                         runtime: Runtime, out_dir: str | os.PathLike,
                         session: TrainingSession | None = None) -> dict[str, Any]:
    """Finetune (or, with ``finetune`` False, keep) the VAE on ``rows``' ``image_path``
    images; write ``out_dir`` (module docstring) and return the metadata to record."""
    out = Path(out_dir)
    session = session or TrainingSession(checkpoint_dir=out)
    paths = [str(p) for p in rows["image_path"]]
    vae = load_pretrained_vae(params.weights, runtime).float().to(runtime.device)
    extra: dict[str, Any] = {}
    if params.finetune:
        log.info("finetuning autoencoder %s (%s) on %d images at %d px on %s", name,
                 params.weights, len(paths), params.resolution, runtime.device)
        curve, discriminator = train_autoencoder(vae, params, paths, runtime, session)
        extra["discriminator_params"] = sum(p.numel() for p in discriminator.parameters())
    else:
        log.info("autoencoder %s: the pretrained VAE of %s as is", name, params.weights)
        curve = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("step", "epoch") else
                                           "float64") for c in CURVE_COLUMNS})
    train_s = session.stopwatch.seconds()
    vae.save_pretrained(out / VAE_FOLDER, safe_serialization=True)
    write_json({"name": name, "params": params.model_dump(mode="json"),
                "scaling_factor": float(vae.config.scaling_factor),
                "normalization": params.normalization, "resolution": params.resolution,
                "finetuned": params.finetune}, out / CONFIG_FILE)
    write_parquet(curve, out / LOSS_FILE)
    return {"autoencoder": name, "n_train": len(paths), "train_s": train_s,
            "params": sum(p.numel() for p in vae.parameters()), **step_cost(curve),
            "device": str(runtime.device), "finetuned": params.finetune, **extra}


def train_autoencoder(vae: Any, params: AutoencoderParams, paths: list[str], runtime: Runtime,
                      session: TrainingSession) -> tuple[pd.DataFrame, PatchDiscriminator]:
    """Train ``vae`` in place (LDM's recipe); return the loss curve and the discriminator."""
    device = runtime.device
    vae.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        # Seeded apart from the global stream: a resumed run builds the same network.
        torch.manual_seed(runtime.seed)
        discriminator = PatchDiscriminator(3, params.disc_layers, params.disc_channels)
    discriminator.to(device)
    perceptual = LPIPS(params.perceptual, runtime) if params.perceptual_weight > 0 else None
    criterion = AutoencoderLoss(vae, discriminator, perceptual, LossWeights.of(params),
                                params.normalization)
    # LDM: Adam(encoder, decoder, quant_conv, post_quant_conv) and Adam(discriminator), both
    # at the learning rate with betas (0.5, 0.9); here one Adam with the two as groups.
    optimizer = torch.optim.Adam(
        [{"params": list(vae.parameters()), "name": "vae"},
         {"params": list(discriminator.parameters()), "name": "discriminator"}],
        lr=params.learning_rate, betas=ADAM_BETAS)
    settings = params.trainer_settings(runtime.seed)
    parts = _LossParts(session, settings)
    trainer = Trainer({"vae": vae, "discriminator": discriminator}, optimizer, settings, device,
                      parts.session, fingerprint=repr(without_run(params)))
    last_layer = criterion.last_layer

    def loss_fn(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        loss, values = criterion(batch.to(device), generator, _steps_done(optimizer, last_layer))
        parts.add(values)
        return loss

    data = CachedImages(paths, params.resolution, runtime.cache_dir,
                        num_workers=runtime.num_workers)
    curve = trainer.fit(data, loss_fn)
    vae.eval()
    return parts.join(curve), discriminator


def _steps_done(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> int:
    """Optimizer steps done so far (LDM's global step): Adam's own count for a parameter
    that gets a gradient at every step, restored with the optimizer when a run resumes."""
    step = optimizer.state.get(param, {}).get("step", 0)
    return int(step)


class _LossParts:
    """Collects the loss parts of each optimizer step (mean over its micro-batches), logs
    them every ``log_every`` steps and keeps them on disk at each checkpoint."""

    def __init__(self, session: TrainingSession, settings: TrainerSettings):
        self.settings, self.outer = settings, session.on_step
        self.session = TrainingSession(checkpoint_dir=session.checkpoint_dir,
                                       stopwatch=session.stopwatch, on_step=self.on_step)
        self.path = session.checkpoint_dir / PARTS_FILE if session.checkpoint_dir else None
        self.steps: dict[int, dict[str, float]] = {}
        if self.path is not None and self.path.is_file():
            # From a run that will resume: a step it redoes is overwritten below.
            self.steps = {int(k): v for k, v in json.loads(self.path.read_text()).items()}
        self.pending: list[dict[str, float]] = []

    def add(self, values: dict[str, float]) -> None:
        self.pending.append(values)

    def on_step(self, step: int) -> None:
        self.steps[step] = {k: _mean([p[k] for p in self.pending]) for k in PARTS}
        self.pending = []
        if step % self.settings.log_every == 0:
            log.info("step %d: %s", step, " ".join(f"{k} {v:.5g}"
                                                    for k, v in self.steps[step].items()))
        if self.path is not None and step % self.settings.checkpoint_every == 0:
            # Before the trainer's checkpoint of this step, so that it never lacks them.
            write_json({str(k): v for k, v in self.steps.items()}, self.path)
        if self.outer is not None:
            self.outer(step)

    def join(self, curve: pd.DataFrame) -> pd.DataFrame:
        """The trainer's curve with the parts of each step; the kept file removed."""
        parts = pd.DataFrame([{"step": s, **v} for s, v in self.steps.items()],
                             columns=["step", *PARTS])
        if self.path is not None and self.path.is_file():
            self.path.unlink()
        return curve.merge(parts.astype({"step": "int64"}), on="step", how="left")[CURVE_COLUMNS]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def load_autoencoder(folder: str | os.PathLike,
                     device: torch.device | str = "cpu") -> tuple[Any, AutoencoderInfo]:
    """The saved ``AutoencoderKL`` (eval mode, frozen, on ``device``) and its info."""
    from diffusers import AutoencoderKL

    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    with hub_offline():
        vae = AutoencoderKL.from_pretrained(folder / VAE_FOLDER, local_files_only=True)
    vae = vae.to(device).eval().requires_grad_(False)
    info = AutoencoderInfo(name=config["name"], normalization=config["normalization"],
                           resolution=int(config["resolution"]),
                           scaling_factor=float(config["scaling_factor"]),
                           finetuned=bool(config["finetuned"]))
    return vae, info


__all__ = ["CONFIG_FILE", "CURVE_COLUMNS", "LOSS_FILE", "VAE_FOLDER", "AutoencoderInfo",
           "denormalize", "finetune_autoencoder", "load_autoencoder", "load_pretrained_vae",
           "normalize", "train_autoencoder"]
