"""The diffusers ``UNet2DModel`` that the diffusion kinds train from scratch.

One layout for every kind: ``len(block_out_channels)`` resolution levels,
plain ResNet blocks in the upper levels and self-attention in the
``attention_levels`` lowest ones (the middle block always has it), group
norm over at most 32 groups so that tiny test widths stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence


def build_unet2d(channels: int, sample_size: int, block_out_channels: Sequence[int],
                 layers_per_block: int, attention_levels: int):
    """A ``UNet2DModel`` mapping ``channels`` x ``sample_size``^2 to the same shape."""
    from diffusers import UNet2DModel

    n, k = len(block_out_channels), attention_levels
    if not 0 <= k <= n:
        raise ValueError(f"attention_levels: {k} is not in 0..{n} (the levels of "
                         "block_out_channels)")
    return UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * (n - k) + ("AttnDownBlock2D",) * k,
        up_block_types=("AttnUpBlock2D",) * k + ("UpBlock2D",) * (n - k),
        norm_num_groups=min(32, min(block_out_channels)),
    )


__all__ = ["build_unet2d"]
