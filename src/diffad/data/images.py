"""The one place where diffad reads images and masks from disk.

Every method and every check goes through :func:`load_image` and
:func:`load_mask`, so colour conversion, resizing and the handling of broken
files are the same everywhere:

1. images are decoded completely (a truncated file fails here, not half-way
   through training), converted to RGB and resized bicubically;
2. masks are binarised with ``value > 0`` (MVTec stores 0/255, VisA 0/1,
   palette PNGs store indices) and resized with nearest neighbour, so a mask
   never gains soft edges.

Example::

    >>> img = load_image("bottle/test/broken_large/000.png", 224)   # doctest: +SKIP
    >>> img.shape, img.dtype
    ((224, 224, 3), dtype('float32'))
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from diffad.errors import DatasetError

#: File extensions (lower case) accepted as images in folder layouts.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# What PIL raises on unreadable, truncated or hostile files.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def is_image_file(name: str) -> bool:
    """True if ``name`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode ``path``; raise :class:`DatasetError` naming it if that fails."""
    try:
        with Image.open(path) as img:
            img.load()
            # load() keeps the pixels; leaving the with-block only closes the file.
            return img
    except FileNotFoundError as exc:
        raise DatasetError(f"image file not found: {os.fspath(path)}") from exc
    except _DECODE_ERRORS as exc:
        raise DatasetError(
            f"cannot read image {os.fspath(path)}: {exc} (file unreadable or truncated)"
        ) from exc


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Decode ``path`` completely and return its ``(width, height)``."""
    return open_image(path).size


def _check_size(size: int | None) -> None:
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive int or None, got {size!r}")


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read ``path`` as float32 RGB in [0, 1], shape ``(size, size, 3)``.

    Args:
        path: image file (any format PIL reads; grey images become RGB).
        size: side of the square output, bicubic resize; ``None`` keeps the
            image's own size.

    Raises:
        DatasetError: the file is missing, unreadable or truncated.
    """
    _check_size(size)
    img = open_image(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


def load_mask(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read a ground-truth mask as a bool array ``(size, size)``; any value > 0 is anomalous.

    Args:
        path: mask file; grey, palette (indices are compared, not colours),
            RGB or RGBA (colour channels only).
        size: side of the square output, nearest-neighbour resize; ``None``
            keeps the mask's own size.

    Raises:
        DatasetError: the file is missing, unreadable or truncated.
    """
    _check_size(size)
    img = open_image(path)
    arr = np.asarray(img)
    if arr.ndim == 3:
        channels = 1 if img.mode in ("LA", "La", "PA") else min(arr.shape[2], 3)
        mask = (arr[..., :channels] > 0).any(axis=-1)
    else:
        mask = arr > 0
    if size is not None and mask.shape != (size, size):
        small = Image.fromarray(mask.astype(np.uint8) * 255)
        mask = np.asarray(small.resize((size, size), Image.Resampling.NEAREST)) > 0
    return np.ascontiguousarray(mask, dtype=bool)
