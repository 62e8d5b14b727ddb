"""A frozen VAE's posterior of each training image, encoded once instead of at every step.

Latent-diffusion training draws z = mean + std x noise from the encoder's diagonal
Gaussian posterior at every step. With the encoder frozen, mean and std of an
image never change, so encoding it again at every step (3 x 256 x 256 through SD's
34 M-parameter encoder) only repeats work: :class:`Posteriors` encodes every image
once and each step samples from the stored pair, the same distribution with the
same draws of the step's generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from diffad.logs import progress

#: Posteriors of a training set up to this size are kept (float32 mean and std); a
#: larger one (e.g. Real-IAD at 512 px) is encoded per step as before.
POSTERIOR_CACHE_BYTES = 2 * 1024**3

#: images -> (mean, std) of the posterior, each (B, C, h, w).
Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Posteriors:
    """``(mean, std)`` of ``encode`` for every image of ``images`` (items: (3, H, W) tensors,
    or (tensor, index) pairs), on the CPU, in the dataset's order."""

    def __init__(self, encode: Encoder, images: Dataset, batch_size: int = 8):
        means, stds = [], []
        loader = DataLoader(images, batch_size=batch_size, shuffle=False)
        with torch.no_grad():
            for batch in progress(loader, desc="encoding posteriors once", unit="batch"):
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                mean, std = encode(x)
                means.append(mean.float().cpu())
                stds.append(std.float().cpu())
        self.mean, self.std = torch.cat(means), torch.cat(stds)

    @staticmethod
    def fits(n: int, latent_shape: Sequence[int]) -> bool:
        """Whether the posteriors of ``n`` images of ``latent_shape`` fit the cache limit."""
        return 2 * 4 * n * int(torch.tensor(latent_shape).prod()) <= POSTERIOR_CACHE_BYTES

    @classmethod
    def within_limit(cls, encode: Encoder, images: Dataset,
                     batch_size: int = 8) -> Posteriors | None:
        """The posteriors of ``images`` where they fit :data:`POSTERIOR_CACHE_BYTES` (the
        latent shape read from the first image), else None: encode at every step then."""
        first = images[0]
        x = first[0] if isinstance(first, (list, tuple)) else first
        with torch.no_grad():
            latent = encode(x[None])[0].shape[1:]
        return cls(encode, images, batch_size) if cls.fits(len(images), latent) else None

    def sample(self, rows: Sequence[int], generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
        """One draw of z per row: mean + std x noise, the noise from ``generator`` (as
        sampling the posterior of a fresh encoding draws it)."""
        mean, std = self.mean[list(rows)], self.std[list(rows)]
        noise = torch.randn(mean.shape, generator=generator)
        return (mean + std * noise).to(device)


__all__ = ["POSTERIOR_CACHE_BYTES", "Posteriors"]
