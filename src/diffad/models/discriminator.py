"""The PatchGAN discriminator of LDM's autoencoder loss (pix2pix's ``NLayerDiscriminator``).

Taming-transformers and LDM (``LPIPSWithDiscriminator``) judge the
autoencoder's reconstructions with pix2pix's N-layer PatchGAN: a stack of
4 x 4 convolutions whose output is one real/fake logit per overlapping patch
(70 x 70 pixels for three layers), not one per image. LDM's kl-f8 config
uses ``n_layers=3`` on 3 input channels with BatchNorm (``use_actnorm`` off)
and 64 base channels.
"""

from __future__ import annotations

import torch
from torch import nn

#: Kernel and padding of every convolution (pix2pix: ``kw = 4``, ``padw = 1``).
KERNEL, PADDING = 4, 1


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, in_channels, H, W) -> (B, 1, h, w) patch logits.

    Layout: a stride-2 convolution to ``ndf`` channels and LeakyReLU(0.2);
    ``n_layers - 1`` stride-2 blocks (convolution to ``ndf * min(2**n, 8)``
    channels, BatchNorm, LeakyReLU); one stride-1 block at
    ``ndf * min(2**n_layers, 8)``; a stride-1 convolution to one channel.
    Convolutions followed by BatchNorm have no bias (it would be cancelled).
    For n_layers = 3 a 64 px input gives 6 x 6 logits, a 256 px one 30 x 30.
    """

    def __init__(self, in_channels: int = 3, n_layers: int = 3, ndf: int = 64):
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f"n_layers and ndf must be >= 1, got {n_layers}, {ndf}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, KERNEL, stride=2, padding=PADDING),
            nn.LeakyReLU(0.2),
        ]
        channels = ndf
        for n in range(1, n_layers + 1):
            # The last of these blocks keeps the resolution (stride 1), as in pix2pix.
            out = ndf * min(2 ** n, 8)
            layers += [
                nn.Conv2d(channels, out, KERNEL, stride=2 if n < n_layers else 1,
                          padding=PADDING, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, KERNEL, stride=1, padding=PADDING))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """pix2pix's ``weights_init``: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02)
        and shift 0; conv biases keep PyTorch's default initialisation."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images)


def patch_grid(size: int, n_layers: int) -> int:
    """Side of the logit grid for a ``size`` px input (0: the input is too small)."""
    for _ in range(n_layers):
        size = (size + 2 * PADDING - KERNEL) // 2 + 1
    for _ in range(2):  # the two stride-1 convolutions
        size = size + 2 * PADDING - KERNEL + 1
    return max(size, 0)


__all__ = ["PatchDiscriminator", "patch_grid"]
