"""Paper 003's model: DiAD-conditioned SD UNet on a finetuned autoencoder's latents."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from diffad.autoencoder import denormalize, load_autoencoder, normalize
from diffad.captions.table import read_captions
from diffad.data.image_cache import IndexedImages
from diffad.device import autocast
from diffad.errors import ConfigError, DatasetError
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.vlmdiff import (
    VlmDiffParams,
    denoising_grid,
    detector_name,
    extractor_spec,
)
from diffad.methods.vlmdiff.control import DiadControl, controlled_unet, freeze_unet_encoder
from diffad.models.feature_similarity import IntermediateFeatures, cosine_distance_map
from diffad.models.noise import image_generators, image_noise
from diffad.models.posterior import Posteriors
from diffad.models.resize import resize
from diffad.models.text_encoder import TextEncoder
from diffad.runtime import Runtime
from diffad.training import Trainer, TrainingSession
from diffad.weights import load_diffusers_component, weight_source

#: Caption embeddings of a training set up to this size are computed once, before
#: training, instead of by the frozen text encoder at every step (MVTec AD's 3,629
#: captions at CLIP's 77 x 768: 0.86 GB; Real-IAD's 36,465 are encoded per batch).
EMBEDDING_CACHE_BYTES = 2 * 1024**3


def _digest(*values) -> str:
    """A short key of the training inputs: a checkpoint made with others is not resumed."""
    return hashlib.sha256(repr(values).encode()).hexdigest()


class VlmDiffModel(AnomalyModel):
    def __init__(self, params: VlmDiffParams, runtime: Runtime,
                 artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        from diffusers import DDIMScheduler, DDPMScheduler

        schedule = {"num_train_timesteps": params.train_timesteps,
                    "beta_schedule": "scaled_linear", "beta_start": params.beta_start,
                    "beta_end": params.beta_end}
        self.noise_schedule = DDPMScheduler(**schedule)
        # LDM's DDIM: the grid 1, 1 + T/S, ... ("leading" spacing, offset 1) and a last
        # step to alpha-bar of timestep 0, not to 1 (set_alpha_to_one False).
        self.sampler = DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False,
                                     steps_offset=1, timestep_spacing="leading")
        self.unet = None
        self.control: DiadControl | None = None
        self._autoencoder = None
        self._text: TextEncoder | None = None
        self._features: dict[str, IntermediateFeatures] = {}

    # ------------------------------------------------------------ upstream parts

    def autoencoder(self):
        """(frozen AutoencoderKL, its info: resolution, normalisation) from the artefact."""
        if self._autoencoder is None:
            paths = self.artefacts.get("autoencoder", {}).get(self.params.autoencoder)
            if not paths:
                raise ConfigError(f"vlmdiff needs the model folder of autoencoder "
                                  f"{self.params.autoencoder!r}; the job was given none")
            self._autoencoder = load_autoencoder(paths[0], self.runtime.device)
        return self._autoencoder

    def text_encoder(self) -> TextEncoder:
        if self._text is None:
            self._text = TextEncoder(self.params.text_encoder, self.runtime,
                                     self.params.max_text_tokens)
        return self._text

    def captions(self, rows: pd.DataFrame, stage: str) -> list[str]:
        """Each row's caption from the ``stage`` tables (``captions`` of the train images,
        ``test_captions``); every image must have one."""
        files = self.artefacts.get(stage, {}).get(self.params.captioner, [])
        table = read_captions(files)
        missing = [p for p in rows["image_path"] if p not in table]
        if missing:
            raise DatasetError(f"{len(missing)} images have no caption in {files} (first: "
                               f"{missing[0]}); rerun the captions rule for them")
        return [table[p] for p in rows["image_path"]]

    def caption_embeddings(self, texts: list[str]) -> Callable[[list[int]], torch.Tensor]:
        """rows -> (B, tokens, width) text embeddings of their captions: from a table
        computed once where it fits :data:`EMBEDDING_CACHE_BYTES`, else encoded per batch
        (the same frozen encoder either way)."""
        encoder = self.text_encoder()
        unique = list(dict.fromkeys(texts))
        size = len(unique) * self.params.max_text_tokens * encoder.width * 4
        if size > EMBEDDING_CACHE_BYTES:
            return lambda rows: encoder([texts[i] for i in rows])
        table = torch.cat([encoder(unique[i:i + 64]) for i in range(0, len(unique), 64)])
        position = {text: i for i, text in enumerate(unique)}
        return lambda rows: table[[position[texts[i]] for i in rows]]

    def features(self, spec: str) -> IntermediateFeatures:
        """The frozen extractor of one ``feature_extractors`` entry."""
        if spec not in self._features:
            name, layers, _ = extractor_spec(spec)
            vit = (weight_source(name).model or name).startswith("vit")
            # DINO's last block after its final norm (the authors' get_intermediate_layers);
            # a CNN's stages 1-3 (DiAD's ResNet-50 layers 1-3).
            layers = layers or ([-1] if vit else [1, 2, 3])
            self._features[spec] = IntermediateFeatures(name, layers, self.runtime, norm=vit)
        return self._features[spec]

    # ----------------------------------------------------------------- training

    def _build(self) -> None:
        """The pretrained UNet with its encoder frozen, and a fresh DiAD control."""
        p = self.params
        unet = load_diffusers_component(p.unet_weights, self.runtime.weights_root,
                                        "UNet2DConditionModel", "unet")
        self.unet = unet.to(self.runtime.device)
        self.control = DiadControl.from_unet(self.unet).to(self.runtime.device)

    def _check_widths(self) -> None:
        width, expected = self.text_encoder().width, self.unet.config.cross_attention_dim
        if width != expected:
            raise ConfigError(
                f"text_encoder {self.params.text_encoder!r} gives {width}-d tokens but "
                f"unet_weights {self.params.unet_weights!r} attends to {expected}-d ones")

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        p = self.params
        vae, info = self.autoencoder()
        self._build()
        self._check_widths()
        trainable = freeze_unet_encoder(self.unet) + list(self.control.parameters())
        texts = self.captions(train, "captions") if p.captioner else [""] * len(train)
        # (image, row) pairs decoded once: the loss looks up the row's caption and posterior.
        data = IndexedImages(train["image_path"].tolist(), info.resolution,
                             self.runtime.cache_dir, self.runtime.num_workers)
        trainer = Trainer(
            {"unet": self.unet, "control": self.control},
            torch.optim.AdamW(trainable, lr=p.learning_rate, weight_decay=p.weight_decay),
            p.trainer_settings(self.runtime.seed),
            self.runtime.device, session,
            fingerprint=_digest(p.values("train"), texts))
        device = self.runtime.device
        embed = self.caption_embeddings(texts)
        # Every image's posterior under the frozen autoencoder, encoded once where they fit.
        posteriors = Posteriors.within_limit(
            lambda images: self.posterior(vae, normalize(images.to(device), info.normalization)),
            data, p.batch_size)

        def loss(batch, generator: torch.Generator) -> torch.Tensor:
            images, index = batch
            x = normalize(images.to(device), info.normalization)
            if posteriors is None:
                z = self.encode(vae, x, generator, sample=True)
            else:  # the frozen encoder's posterior, encoded once: the same draw
                z = p.latent_scale * posteriors.sample([int(i) for i in index], generator,
                                                       device)
            t = torch.randint(0, p.train_timesteps, (len(z),), generator=generator)
            noise = torch.randn(z.shape, generator=generator).to(device)
            t = t.to(device)
            z_t = self.noise_schedule.add_noise(z, noise, t)
            text = embed([int(i) for i in index])
            eps = controlled_unet(self.unet, self.control, z_t, t, text, x)
            return F.mse_loss(eps.float(), noise)  # Eq. 2

        return trainer.fit(data, loss)

    @torch.no_grad()
    def posterior(self, vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the autoencoder's posterior of ``x`` (normalised images)."""
        with autocast(self.runtime.device):
            posterior = vae.encode(x).latent_dist
        return posterior.mean.float(), posterior.std.float()

    @torch.no_grad()
    def encode(self, vae, x: torch.Tensor,
               generator: torch.Generator | list[torch.Generator], sample: bool) -> torch.Tensor:
        """z = latent_scale * E(x): a posterior sample (``sample``) or its mean. Training
        draws from its one generator; inference from one generator per image."""
        mean, std = self.posterior(vae, x)
        if sample:
            noise = (image_noise(mean.shape, generator, mean.device)
                     if isinstance(generator, list)
                     else torch.randn(mean.shape, generator=generator).to(mean.device))
            mean = mean + std * noise
        return self.params.latent_scale * mean

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, texts: list[str] | None,
                    generators: list[torch.Generator]) -> torch.Tensor:
        """Encode, noise to ``start_timestep``, ``ddim_steps`` DDIM steps, decode: the
        reconstruction in the autoencoder's normalised space."""
        p = self.params
        vae, _ = self.autoencoder()
        z = self.encode(vae, x, generators, sample=p.latent_sampling == "sample")
        self.sampler.set_timesteps(p.ddim_steps)  # the step size of DDIM's updates
        # The grid's points up to the start; a start below its first point denoises from
        # there on (SDEdit-like).
        grid = denoising_grid(p)
        start = grid[0] if p.start_timestep is None else p.start_timestep
        noise = image_noise(z.shape, generators, z.device)
        z_t = self.noise_schedule.add_noise(
            z, noise, torch.full((len(z),), start, dtype=torch.long, device=z.device))
        empty = self.text_encoder()([""] * len(z))
        text = self.text_encoder()(texts) if texts is not None else empty
        guided = texts is not None and p.guidance_scale != 1
        for t in grid:
            step = torch.full((len(z),), t, dtype=torch.long, device=z.device)
            with autocast(self.runtime.device):
                eps = controlled_unet(self.unet, self.control, z_t, step, text, x).float()
                if guided:  # classifier-free guidance against the empty text
                    eps_empty = controlled_unet(self.unet, self.control, z_t, step, empty,
                                                x).float()
                    eps = eps_empty + p.guidance_scale * (eps - eps_empty)
            z_t = self.sampler.step(eps, t, z_t, eta=0.0).prev_sample
        with autocast(self.runtime.device):
            return vae.decode(z_t / p.latent_scale).sample.float()

    @torch.no_grad()
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        _, info = self.autoencoder()
        size = images.shape[-1]
        small = resize(images, info.resolution)
        x = normalize(small, info.normalization)
        texts = (self.captions(rows, "test_captions") if self.params.caption_at_inference
                 else None)
        generators = image_generators(self.runtime.seed, rows["image_path"].tolist())
        # Not clamped: the authors compare the raw decoder output with the input.
        recon = denormalize(self.reconstruct(x, texts, generators), info.normalization)
        maps = {}
        for spec in self.params.feature_extractors:
            side = extractor_spec(spec)[2] or self.params.feature_resolution or info.resolution
            # Plain cosine (floor 0), as the authors' maps.
            m = cosine_distance_map(self.features(spec), resize(small, side),
                                    resize(recon, side), size, floor=0.0)
            maps[detector_name(spec)] = m.cpu().numpy()
        scores = {name: m.reshape(len(m), -1).max(axis=1) for name, m in maps.items()}
        return Prediction(scores=scores, maps=maps)

    def eval(self) -> None:
        self.unet.eval()
        self.control.eval()

    # ----------------------------------------------------------------- storage

    def num_parameters(self) -> int:
        vae, _ = self.autoencoder()
        return sum(p.numel() for net in (self.unet, self.control, vae) for p in net.parameters())

    def save_networks(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.unet.save_pretrained(folder / "unet")
        self.control.control.save_pretrained(folder / "control")
        save_file({k: v.contiguous() for k, v in self.control.fusion.state_dict().items()},
                  str(folder / "fusion.safetensors"))
        self.noise_schedule.save_pretrained(folder / "scheduler")

    def load_networks(self, folder: Path) -> None:
        from diffusers import ControlNetModel, UNet2DConditionModel
        from safetensors.torch import load_file

        folder, device = Path(folder), self.runtime.device
        self.unet = UNet2DConditionModel.from_pretrained(folder / "unet").to(device)
        control = ControlNetModel.from_pretrained(folder / "control")
        self.control = DiadControl(control, self.unet.config.block_out_channels,
                                   self.unet.config.layers_per_block)
        self.control.fusion.load_state_dict(load_file(str(folder / "fusion.safetensors")))
        self.control.to(device)


__all__ = ["VlmDiffModel"]
