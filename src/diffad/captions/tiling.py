"""InternVL's dynamic high-resolution input: an image cut into square tiles plus a thumbnail.

InternVL2 sees an image as up to ``max_tiles`` tiles of ``tile_size`` pixels
(448) on the grid whose aspect ratio is closest to the image's, so a wide
image keeps its detail instead of being squashed into one square; when there
is more than one tile, a thumbnail of the whole image follows them. Each tile
is normalised with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from diffad.data.images import IMAGENET_MEAN, IMAGENET_STD


def tile_grid(width: int, height: int, tile_size: int = 448, min_tiles: int = 1,
              max_tiles: int = 12) -> tuple[int, int]:
    """The grid (columns, rows) an image of ``width`` x ``height`` is cut into.

    Among the grids with ``min_tiles`` to ``max_tiles`` tiles, the one whose
    aspect ratio is closest to the image's; on a tie, a larger grid wins only
    when the image has more than half the pixels of its tiles (a small image is
    not blown up into many tiles).
    """
    if not 1 <= min_tiles <= max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {min_tiles}, {max_tiles}")
    aspect = width / height
    # Smaller grids first, so that a tie goes to the larger grid only on purpose.
    grids = sorted(((i, j) for i in range(1, max_tiles + 1) for j in range(1, max_tiles + 1)
                    if min_tiles <= i * j <= max_tiles), key=lambda g: (g[0] * g[1], g))
    best, best_diff = grids[0], float("inf")
    for i, j in grids:
        diff = abs(aspect - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and width * height > 0.5 * tile_size * tile_size * i * j:
            best = (i, j)
    return best


def dynamic_tiles(image: Image.Image, tile_size: int = 448, min_tiles: int = 1,
                  max_tiles: int = 12, thumbnail: bool = True) -> list[Image.Image]:
    """``image`` resized (bicubic) onto its :func:`tile_grid` and cut into tiles row by row,
    followed by a ``tile_size`` thumbnail of the whole image when there is more than one."""
    cols, rows = tile_grid(image.width, image.height, tile_size, min_tiles, max_tiles)
    resized = image.resize((cols * tile_size, rows * tile_size), Image.Resampling.BICUBIC)
    tiles = [resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size,
                           (r + 1) * tile_size))
             for r in range(rows) for c in range(cols)]
    if thumbnail and len(tiles) > 1:
        tiles.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


def tiles_to_tensor(tiles: Sequence[Image.Image], mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, tile_size: int = 448) -> torch.Tensor:
    """Tiles as a normalised float32 tensor ``(n, 3, tile_size, tile_size)``: each resized
    (bicubic) to ``tile_size`` if it is not already, scaled to [0, 1], then
    ``(x - mean) / std`` per channel."""
    if not tiles:
        raise ValueError("no tiles to convert")
    arrays = []
    for tile in tiles:
        tile = tile.convert("RGB")
        if tile.size != (tile_size, tile_size):
            tile = tile.resize((tile_size, tile_size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(tile, dtype=np.float32) / np.float32(255.0))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).contiguous()


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "dynamic_tiles", "tile_grid", "tiles_to_tensor"]
