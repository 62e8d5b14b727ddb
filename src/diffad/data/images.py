"""The one place where diffad reads images and masks from disk.

Every method and every check goes through :func:`load_image` and
:func:`load_mask`, so colour conversion, resizing and the handling of broken
files are the same everywhere:

1. images are decoded completely (a truncated file fails here, not half-way
   through training), converted to float RGB in [0, 1] as the list below
   says, and resized bicubically;
2. masks are binarised with ``value > 0`` (MVTec stores 0/255, VisA 0/1,
   palette PNGs store indices, 16-bit masks 0/65535) and resized with
   nearest neighbour, so a mask never gains soft edges.

Conversion of each PIL mode to float RGB in [0, 1] (grey modes give three
equal channels). Every value is divided by the largest value its bit depth
can hold, never clipped at 255, so a 16-bit image keeps its whole range:

- ``L``, ``RGB``: value / 255. (Pillow decodes 16-bit-per-channel colour
  PNGs to ``RGB`` itself, keeping the high byte: scaled, not clipped.)
- ``1``: 0 or 1.
- ``P``, ``PA``: the palette's colour / 255.
- ``LA``, ``La``, ``RGBA``, ``RGBa``, ``RGBX``: alpha dropped, the colour
  channels as stored (``La``/``RGBa`` un-premultiplied), not composited
  onto a background; / 255.
- ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``: PIL's conversion to RGB; / 255.
- ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit PNG and TIFF): value / 65535.
- ``I`` (Pillow's 32-bit signed mode): value / (2**31 - 1), negatives clip
  to 0; when the file held 16-bit samples (16-bit PNGs on older Pillow,
  signed 16-bit TIFF), value / 65535 (unsigned) or / 32767 (signed).
- ``F`` (32-bit float): the values are taken as intensities in [0, 1]
  already; a file with values outside [0, 1] (beyond rounding) or NaN/inf
  is refused, naming it, because no scale can be inferred without guessing.
- any other mode is refused, naming the file.

Alpha is ignored rather than composited because industrial datasets that
ship RGBA files (exports of inspection software) carry an opaque or
meaningless alpha; compositing would paint arbitrary black where it is 0.
This is also what ``PIL.Image.convert("RGB")`` and OpenCV's
``IMREAD_COLOR`` do, so scores match other anomaly-detection code.

Example::

    >>> img = load_image("bottle/test/broken_large/000.png", 224)   # doctest: +SKIP
    >>> img.shape, img.dtype
    ((224, 224, 3), dtype('float32'))
"""

from __future__ import annotations

import os
import re

import numpy as np
from PIL import Image

from diffad.errors import DatasetError

#: ImageNet's channel statistics, with which many networks' inputs are normalised (the
#: authors' code of papers 003 and InternVL2 normalise images with them).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: File extensions (lower case) accepted as images in folder layouts.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# What PIL raises on unreadable, truncated or hostile files.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

# 8-bit modes PIL converts to RGB itself (La goes through LA: PIL has no La -> RGB).
_EIGHT_BIT_MODES = frozenset(
    ("1", "L", "P", "PA", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV",
     "LAB")
)
_UINT16_MODES = frozenset(("I;16", "I;16B", "I;16L", "I;16N"))
_HIGH_DEPTH_MODES = _UINT16_MODES | {"I", "F"}
# How far a float (mode F) image may stray outside [0, 1] by rounding before it is refused.
_FLOAT_TOLERANCE = 1e-3
_INT32_MAX = 2**31 - 1


def is_image_file(name: str) -> bool:
    """True if ``name`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _rawmode(img: Image.Image) -> str | None:
    """The decoder's raw mode of a not yet loaded image (how the file stores its samples)."""
    for tile in getattr(img, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        if isinstance(args, str):
            return args
        if isinstance(args, tuple) and args and isinstance(args[0], str):
            return args[0]
    return None


def _decode(path: str | os.PathLike) -> tuple[Image.Image, str | None]:
    try:
        with Image.open(path) as img:
            rawmode = _rawmode(img)  # load() clears img.tile
            img.load()
            # load() keeps the pixels; leaving the with-block only closes the file.
            return img, rawmode
    except FileNotFoundError as exc:
        raise DatasetError(f"image file not found: {os.fspath(path)}") from exc
    except _DECODE_ERRORS as exc:
        raise DatasetError(
            f"cannot read image {os.fspath(path)}: {exc} (file unreadable or truncated)"
        ) from exc


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode ``path``; raise :class:`DatasetError` naming it if that fails."""
    return _decode(path)[0]


def _int_max(rawmode: str | None) -> int:
    """The largest value of the samples a mode ``I`` image was decoded from."""
    match = re.fullmatch(r"I;(\d+)(\w*)", rawmode or "")
    if match is None or int(match.group(1)) > 31:
        return _INT32_MAX
    bits, signed = int(match.group(1)), "S" in match.group(2)
    return 2 ** (bits - signed) - 1


def _float_grey(img: Image.Image, rawmode: str | None, path: str) -> np.ndarray:
    """A high-depth (``I;16*``, ``I``, ``F``) image as float32 HxW in [0, 1]."""
    arr = np.asarray(img)
    if img.mode in _UINT16_MODES:
        return arr.astype(np.float32) / np.float32(65535.0)
    if img.mode == "I":
        scaled = arr.astype(np.float64) / _int_max(rawmode)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)
    grey = arr.astype(np.float32)
    _check_float_range(grey, path)
    return np.clip(grey, 0.0, 1.0)


def _check_float_range(values: np.ndarray, path: str) -> None:
    if not np.isfinite(values).all():
        raise DatasetError(f"float image {path} holds NaN or infinite values")
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        raise DatasetError(
            f"float image {path} holds values in [{low:g}, {high:g}]; float (mode F) images "
            f"must hold intensities in [0, 1]: rescale it or save it as an 8/16-bit image"
        )


def _check_mode(img: Image.Image, path: str) -> None:
    if img.mode not in _EIGHT_BIT_MODES and img.mode not in _HIGH_DEPTH_MODES:
        raise DatasetError(
            f"image {path} has PIL mode {img.mode!r}, which diffad does not convert to RGB; "
            f"save it as grey or RGB (8 or 16 bit)"
        )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Decode ``path`` completely and return its ``(width, height)``.

    The manifest calls it on every image and mask, so it also refuses what
    :func:`load_image` would refuse later (an unknown mode, a float image
    outside [0, 1]): a bad file fails the manifest, not a training job.
    """
    img = open_image(path)
    _check_mode(img, os.fspath(path))
    if img.mode == "F":
        # The whole array, not getextrema(): that skips NaN.
        _check_float_range(np.asarray(img), os.fspath(path))
    return img.size


def _check_size(size: int | None) -> None:
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive int or None, got {size!r}")


#: Resampling filters :func:`load_image` offers (papers' code resize with either).
RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def load_image(path: str | os.PathLike, size: int | None = None,
               interpolation: str = "bicubic") -> np.ndarray:
    """Read ``path`` as float32 RGB in [0, 1], shape ``(size, size, 3)``.

    Args:
        path: image file (any format PIL reads; every mode is converted as
            the module docstring's table says: grey becomes RGB, 16-bit
            keeps its range, alpha is dropped).
        size: side of the square output; ``None`` keeps the image's own size.
        interpolation: the resize filter, ``bicubic`` (default) or ``bilinear``.

    Raises:
        DatasetError: the file is missing, unreadable or truncated, has a
            mode diffad does not convert, or is a float image outside [0, 1].
    """
    _check_size(size)
    if interpolation not in RESAMPLING:
        raise ValueError(f"interpolation must be one of {list(RESAMPLING)}, got {interpolation!r}")
    resample = RESAMPLING[interpolation]
    path_str = os.fspath(path)
    img, rawmode = _decode(path)
    _check_mode(img, path_str)
    target = None if size is None or img.size == (size, size) else (size, size)
    if img.mode in _HIGH_DEPTH_MODES:
        grey = _float_grey(img, rawmode, path_str)
        if target is not None:
            # Resized in float (mode F), so no precision is lost to 8 bits on the way;
            # bicubic overshoots at edges, hence the clip.
            resized = Image.fromarray(grey).resize(target, resample)
            grey = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if img.mode == "La":
        img = img.convert("LA")
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError as exc:  # LAB on Pillow versions without that conversion
            raise DatasetError(f"cannot convert image {path_str} (mode {img.mode}) to RGB: "
                               f"{exc}") from exc
    if target is not None:
        img = img.resize(target, resample)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


# Modes whose first channel alone says "anomalous" (the rest is alpha).
_MASK_FIRST_CHANNEL = frozenset(("LA", "La", "PA"))
# Modes whose first three channels are colours (the fourth is alpha or padding).
_MASK_COLOUR = frozenset(("RGB", "RGBA", "RGBa", "RGBX"))


def load_mask(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read a ground-truth mask as a bool array ``(size, size)``; any value > 0 is anomalous.

    Args:
        path: mask file; bilevel, grey of any depth (8, 16, 32-bit integer
            or float), palette (indices are compared, not colours), RGB or
            RGBA (colour channels only); other colour modes (CMYK, YCbCr,
            ...) are converted to RGB first, since their zero is not black.
        size: side of the square output, nearest-neighbour resize; ``None``
            keeps the mask's own size.

    Raises:
        DatasetError: the file is missing, unreadable or truncated.
    """
    _check_size(size)
    img = open_image(path)
    if img.mode in _MASK_FIRST_CHANNEL:
        mask = np.asarray(img)[..., 0] > 0
    elif img.mode in _MASK_COLOUR:
        mask = (np.asarray(img)[..., :3] > 0).any(axis=-1)
    elif img.mode in _EIGHT_BIT_MODES - {"1", "L", "P"}:
        mask = (np.asarray(img.convert("RGB")) > 0).any(axis=-1)
    else:
        # 1, L, P (indices), I;16*, I and F: one channel, any depth. Compared as
        # stored: 16-bit 0/65535 masks are never squeezed into 8 bits first.
        mask = np.asarray(img) > 0
    if size is not None and mask.shape != (size, size):
        small = Image.fromarray(mask.astype(np.uint8) * 255)
        mask = np.asarray(small.resize((size, size), Image.Resampling.NEAREST)) > 0
    return np.ascontiguousarray(mask, dtype=bool)
