"""DiAD's conditioning of the Stable Diffusion UNet, which VLMDiff (paper 003) inherits.

Not plain ControlNet (facts from the authors' ``sgn/sgn.py``, identical in
lewandofskee/DiAD and giddyyupp/VLMDiff):

1. A trainable copy of the UNet's encoder and middle block (diffusers'
   ``ControlNetModel.from_unet``) receives the noisy latent and, added after
   its first convolution, a pixel-space hint of the input image: a small conv
   encoder (3 -> 16 -> 16 -> 32/2 -> 32 -> 96/2 -> 96 -> 256/2, SiLU, x8 down,
   the last conv zero-initialised), which is diffusers'
   ``ControlNetConditioningEmbedding`` with channels (16, 32, 96, 256).
2. A zero-initialised 1x1 conv on each encoder output and on the middle block
   (ControlNet's zero convs; diffusers' ``controlnet_down_blocks`` /
   ``controlnet_mid_block``).
3. The semantic-guided feature fusion (SFF) of :class:`SemanticFeatureFusion`:
   the outputs at the second-lowest resolution feed, through zero-initialised
   stride-2 convs with InstanceNorm and SiLU, the outputs at the lowest one.
4. Control is added to the UNet's middle block and to the lowest-resolution
   skip connections only (the authors run ``only_mid_control=True``, which in
   their code adds the middle output and the three fused lowest skips); every
   other skip gets nothing. The UNet's encoder and middle block stay frozen
   while its decoder trains (:func:`freeze_unet_encoder`).

At initialisation every control output is zero, so the conditioned UNet is the
pretrained one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: The hint encoder's channels: DiAD's input_hint_block and diffusers' default.
HINT_CHANNELS = (16, 32, 96, 256)


def residual_layout(block_out_channels: Sequence[int],
                    layers_per_block: int) -> list[tuple[int, int]]:
    """(channels, level) of each encoder output a UNet2DConditionModel hands to its
    decoder, in order: ``conv_in``, then per block its resnets and (except the last
    block) its downsampler, which already sits one level lower."""
    layout = [(block_out_channels[0], 0)]
    last = len(block_out_channels) - 1
    for level, channels in enumerate(block_out_channels):
        layout += [(channels, level)] * layers_per_block
        if level < last:
            layout.append((channels, level + 1))
    return layout


def fusion_indices(layout: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(sources, targets): the outputs at the second-lowest and at the lowest level."""
    lowest = max(level for _, level in layout)
    if lowest < 1:
        raise ValueError("DiAD's fusion needs a UNet with at least two resolution levels")
    targets = [i for i, (_, level) in enumerate(layout) if level == lowest]
    sources = [i for i, (_, level) in enumerate(layout) if level == lowest - 1]
    return sources, targets


class _Branch(nn.Sequential):
    """Zero-initialised 3x3 stride-2 conv, InstanceNorm (no affine), SiLU."""

    def __init__(self, in_channels: int, out_channels: int):
        conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        nn.init.zeros_(conv.weight)
        super().__init__(conv, nn.InstanceNorm2d(out_channels), nn.SiLU())


class SemanticFeatureFusion(nn.Module):
    """DiAD's SFF: ``target_j <- SiLU(target_j + sum_i branch_ji(source_i))``.

    Each branch maps one source (second-lowest resolution) down by 2 to its
    target's channels; the branches start at zero, so the fusion starts as
    SiLU of the target, which is zero while the zero convs are.
    """

    def __init__(self, source_channels: Sequence[int], target_channels: Sequence[int]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.ModuleList(_Branch(s, t) for s in source_channels) for t in target_channels)

    def forward(self, sources: Sequence[torch.Tensor],
                targets: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for branches, target in zip(self.branches, targets, strict=True):
            fused = target
            for branch, source in zip(branches, sources, strict=True):
                fused = fused + branch(source)
            out.append(F.silu(fused))
        return out


class DiadControl(nn.Module):
    """The trainable conditioning: the control copy and the fusion (see the module doc)."""

    def __init__(self, control: nn.Module, block_out_channels: Sequence[int],
                 layers_per_block: int):
        super().__init__()
        self.control = control
        layout = residual_layout(block_out_channels, layers_per_block)
        self.sources, self.targets = fusion_indices(layout)
        self.fusion = SemanticFeatureFusion([layout[i][0] for i in self.sources],
                                            [layout[i][0] for i in self.targets])

    @classmethod
    def from_unet(cls, unet: Any) -> DiadControl:
        """A fresh control for ``unet`` (a diffusers UNet2DConditionModel): its encoder
        and middle block copied, the hint encoder and every output zero-initialised."""
        from diffusers import ControlNetModel

        control = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS,
                                            conditioning_channels=3)
        return cls(control, unet.config.block_out_channels, unet.config.layers_per_block)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                hint: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(residuals for every skip, zeros except the lowest level; middle residual)."""
        down, middle = self.control(latents, timesteps, encoder_hidden_states=text,
                                    controlnet_cond=hint, return_dict=False)
        fused = self.fusion([down[i] for i in self.sources], [down[i] for i in self.targets])
        residuals = [torch.zeros_like(d) for d in down]
        for index, value in zip(self.targets, fused, strict=True):
            residuals[index] = value
        return tuple(residuals), middle


def freeze_unet_encoder(unet: nn.Module) -> list[nn.Parameter]:
    """Freeze the UNet's input convolution, time embedding, encoder and middle block; the
    decoder (``up_blocks``, ``conv_norm_out``, ``conv_out``) trains. Returns the trainable
    parameters."""
    unet.requires_grad_(False)
    trainable = [unet.up_blocks, unet.conv_out]
    if unet.conv_norm_out is not None:
        trainable.append(unet.conv_norm_out)
    for module in trainable:
        module.requires_grad_(True)
    return [p for p in unet.parameters() if p.requires_grad]


def controlled_unet(unet: nn.Module, control: DiadControl, latents: torch.Tensor,
                    timesteps: torch.Tensor, text: torch.Tensor,
                    hint: torch.Tensor) -> torch.Tensor:
    """The UNet's noise prediction with DiAD's control added."""
    residuals, middle = control(latents, timesteps, text, hint)
    return unet(latents, timesteps, encoder_hidden_states=text,
                down_block_additional_residuals=residuals,
                mid_block_additional_residual=middle, return_dict=False)[0]


__all__ = ["DiadControl", "HINT_CHANNELS", "SemanticFeatureFusion", "controlled_unet",
           "fusion_indices", "freeze_unet_encoder", "residual_layout"]
