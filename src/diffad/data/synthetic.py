"""The embedded default dataset: small, deterministic, MVTec-layout images with drawn defects.

Categories (:data:`SYNTHETIC_CATEGORIES`):

- ``tiles`` (texture): square tiles with dark grout lines and a faint
  diagonal grain; each image shifts the grid by a random phase and jitters
  the colour slightly.
- ``widget`` (object): a metal hex nut with a round hole, centred on a grey
  background; each image jitters position, rotation and colour slightly.

Defect types (:data:`DEFECT_TYPES`), each covering roughly 1-4 % of the
image, drawn with hard edges so that the mask is exactly the set of pixels
the defect painted:

1. ``scratch``: a thin straight dark or bright line;
2. ``blob``: an irregular dark or bright spot;
3. ``color_stain``: a translucent ellipse tinted red, green or blue;
4. ``missing_part``: on the nut, a wedge of the rim cut away down to the
   background; on the tiles, a square patch replaced by a flat colour.

On the object, defects are painted only on the nut itself. Generation is
deterministic: every image draws from its own ``numpy`` Generator seeded with
``(seed, category, split/defect, index)``, so the same parameters give
byte-identical PNG files. A stamp ``<root>/<category>/synthetic.json`` records
the parameters; a category is regenerated only when it is missing or its
stamp differs. The ``synthetic`` kind's manifest of one category generates
only that category, so per-category manifest jobs never touch each other's
folders.

Example::

    >>> generate_synthetic("data/synthetic/images", ["tiles"], seed=0)  # doctest: +SKIP
    ['tiles']
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from diffad.data.folder import scan_category
from diffad.data.options import root_of
from diffad.data.registry import Listing, register_dataset
from diffad.errors import ConfigError

#: Bumped whenever a change to this module changes the generated pixels.
GENERATOR_VERSION = 1
SYNTHETIC_CATEGORIES = ("tiles", "widget")
DEFECT_TYPES = ("scratch", "blob", "color_stain", "missing_part")
DEFAULT_PARAMS = {"n_train": 40, "n_test_good": 12, "n_test_defect": 5, "seed": 0}
DEFAULT_IMAGE_SIZE = 224
STAMP_NAME = "synthetic.json"

# Defect area limits, as fractions of the image: visible, never enormous.
_MIN_AREA, _MAX_AREA = 0.006, 0.05
_TINTS = np.array([[0.85, 0.12, 0.10], [0.12, 0.65, 0.18], [0.12, 0.25, 0.90]], np.float32)


@dataclass
class _Scene:
    """One normal image plus what defects need to know about it."""

    image: np.ndarray  # float32 HxWx3 in [0, 1]
    region: np.ndarray  # bool HxW: where defects may be painted
    background: np.ndarray | None = None  # what lies under the object (object categories)
    polar: tuple[np.ndarray, np.ndarray] | None = None  # (radius, angle) around the object


def _rng(seed: int, category: str, group: str, index: int) -> np.random.Generator:
    # crc32 rather than hash(): Python salts str hashes per process.
    entropy = [seed, zlib.crc32(category.encode()), zlib.crc32(group.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _noise(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False  # shared between images and threads
    return yy, xx


def _tiles(rng: np.random.Generator, size: int) -> _Scene:
    yy, xx = _grid(size)
    period = max(8, round(size / 8))
    grout = max(2, period // 9)
    oy, ox = rng.uniform(0, period, size=2)
    colour = np.array([0.74, 0.60, 0.46], np.float32) + rng.normal(0, 0.015, 3).astype(np.float32)
    grain = 0.035 * np.sin(2 * np.pi * (xx + yy + ox + oy) / (period / 2))
    img = colour[None, None, :] * (1 + grain[..., None])
    lines = ((xx + ox) % period < grout) | ((yy + oy) % period < grout)
    img[lines] = colour * 0.5
    img += _noise(rng, 0.015, img.shape)
    return _Scene(np.clip(img, 0, 1), np.ones((size, size), bool))


def _widget(rng: np.random.Generator, size: int) -> _Scene:
    yy, xx = _grid(size)
    cy, cx = size / 2 + rng.uniform(-0.02, 0.02, size=2) * size
    theta = rng.uniform(0, np.pi / 3)  # a hexagon repeats every 60 degrees
    grey = 0.36 + rng.normal(0, 0.01)
    background = np.repeat((grey + 0.06 * (yy / size - 0.5))[..., None], 3, axis=2)
    background += _noise(rng, 0.008, background.shape)
    dy, dx = yy - cy, xx - cx
    radius = np.hypot(dy, dx)
    angle = np.arctan2(dy, dx)
    apothem = 0.30 * size * np.cos(np.pi / 6)
    inside = np.ones_like(radius, dtype=bool)
    for k in range(3):
        a = theta + k * np.pi / 3
        inside &= np.abs(dx * np.cos(a) + dy * np.sin(a)) <= apothem
    nut = inside & (radius >= 0.12 * size)
    metal = np.array([0.80, 0.77, 0.70], np.float32) + rng.normal(0, 0.012, 3).astype(np.float32)
    shade = 1.0 - 0.18 * radius / (0.3 * size) + 0.05 * np.cos(angle - 0.8)
    groove = np.abs(radius - 0.17 * size) < 0.008 * size
    shade = np.where(groove, shade * 0.8, shade)
    obj = metal[None, None, :] * shade[..., None]
    obj += _noise(rng, 0.008, obj.shape)
    img = np.where(nut[..., None], obj, background)
    return _Scene(np.clip(img, 0, 1), nut, np.clip(background, 0, 1), (radius, angle))


def _defect_centre(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[float, float]:
    if scene.polar is None:
        margin = 0.12 * size
        y, x = rng.uniform(margin, size - margin, size=2)
        return float(y), float(x)
    ys, xs = np.nonzero(scene.region)
    i = rng.integers(len(ys))
    return float(ys[i]), float(xs[i])


def _scratch(rng, scene, size):
    yy, xx = _grid(size)
    cy, cx = _defect_centre(rng, scene, size)
    psi = rng.uniform(0, np.pi)
    half = rng.uniform(0.17, 0.24) * size
    width = rng.uniform(2.0, 2.8) * size / 224
    uy, ux = np.sin(psi), np.cos(psi)
    t = np.clip((yy - cy) * uy + (xx - cx) * ux, -half, half)
    dist = np.hypot(yy - (cy + t * uy), xx - (cx + t * ux))
    mask = dist <= width
    value = rng.uniform(0.05, 0.15) if rng.random() < 0.5 else rng.uniform(0.93, 1.0)
    return mask, lambda img, m: np.full_like(img[m], value)


def _blob(rng, scene, size):
    yy, xx = _grid(size)
    cy, cx = _defect_centre(rng, scene, size)
    r0 = rng.uniform(0.055, 0.085) * size
    a, b, c = rng.uniform(0, 2 * np.pi, size=3)
    phi = np.arctan2(yy - cy, xx - cx)
    wobble = 0.22 * np.sin(3 * phi + a) + 0.12 * np.sin(5 * phi + b) + 0.08 * np.cos(2 * phi + c)
    edge = r0 * (1 + wobble)
    mask = np.hypot(yy - cy, xx - cx) <= edge
    dark = rng.random() < 0.5
    level = rng.uniform(0.25, 0.4) if dark else rng.uniform(0.6, 0.75)
    return mask, lambda img, m: img[m] * level if dark else img[m] + (1 - img[m]) * level


def _color_stain(rng, scene, size):
    yy, xx = _grid(size)
    cy, cx = _defect_centre(rng, scene, size)
    ax, by = rng.uniform(0.07, 0.10) * size, rng.uniform(0.045, 0.07) * size
    rot = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)
    v = -(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)
    mask = (u / ax) ** 2 + (v / by) ** 2 <= 1
    tint = _TINTS[rng.integers(len(_TINTS))]
    alpha = rng.uniform(0.5, 0.65)
    return mask, lambda img, m: (1 - alpha) * img[m] + alpha * tint


def _missing_part(rng, scene, size):
    if scene.polar is None:
        yy, xx = _grid(size)
        cy, cx = _defect_centre(rng, scene, size)
        hh, hw = rng.uniform(0.06, 0.09, size=2) * size
        mask = (np.abs(yy - cy) <= hh) & (np.abs(xx - cx) <= hw)
        flat = scene.image[scene.region].mean(axis=0) * rng.uniform(0.8, 0.9)
        return mask, lambda img, m: np.broadcast_to(flat, img[m].shape)
    radius, angle = scene.polar
    phi0 = rng.uniform(-np.pi, np.pi)
    half = np.deg2rad(rng.uniform(18, 26))
    inner = rng.uniform(0.16, 0.19) * size
    gap = np.abs((angle - phi0 + np.pi) % (2 * np.pi) - np.pi)
    mask = (gap <= half) & (radius >= inner)
    background = scene.background
    return mask, lambda img, m: background[m]


_DEFECTS: dict[str, Callable[..., Any]] = {
    "scratch": _scratch,
    "blob": _blob,
    "color_stain": _color_stain,
    "missing_part": _missing_part,
}
_SCENES: dict[str, Callable[[np.random.Generator, int], _Scene]] = {
    "tiles": _tiles,
    "widget": _widget,
}


def _paint_defect(
    rng: np.random.Generator, scene: _Scene, defect: str, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``defect`` on ``scene``; return the image and its exact mask."""
    lo, hi = _MIN_AREA * size * size, _MAX_AREA * size * size
    for _ in range(50):
        shape, paint = _DEFECTS[defect](rng, scene, size)
        mask = shape & scene.region
        if lo <= mask.sum() <= hi:
            break
    else:  # pragma: no cover - with the shape ranges above this never happens
        raise RuntimeError(f"could not place a {defect} defect of sensible size")
    img = scene.image.copy()
    img[mask] = np.clip(paint(img, mask), 0, 1)
    return img, mask


def _save_png(array: np.ndarray, path: str) -> None:
    if array.dtype == bool:
        data = array.astype(np.uint8) * 255
    else:
        data = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    # Level 1: noisy images barely compress better at higher levels, only slower.
    Image.fromarray(data).save(path, format="PNG", compress_level=1)


def _write_image(folder: str, category: str, group: str, i: int, size: int, seed: int) -> None:
    """Draw and save image ``i`` of ``group`` ("train", "test/good" or "test/<defect>")."""
    rng = _rng(seed, category, group, i)
    scene = _SCENES[category](rng, size)
    split, defect = group.split("/") if "/" in group else (group, "good")
    if defect == "good":
        _save_png(scene.image, os.path.join(folder, split, "good", f"{i:03d}.png"))
        return
    img, mask = _paint_defect(rng, scene, defect, size)
    _save_png(img, os.path.join(folder, "test", defect, f"{i:03d}.png"))
    _save_png(mask, os.path.join(folder, "ground_truth", defect, f"{i:03d}_mask.png"))


def _generate_category(folder: str, category: str, size: int, params: dict[str, int]) -> None:
    jobs = [("train", i) for i in range(params["n_train"])]
    jobs += [("test/good", i) for i in range(params["n_test_good"])]
    jobs += [(f"test/{d}", i) for d in DEFECT_TYPES for i in range(params["n_test_defect"])]
    os.makedirs(os.path.join(folder, "train", "good"))
    for d in ("good", *DEFECT_TYPES):
        os.makedirs(os.path.join(folder, "test", d))
    for d in DEFECT_TYPES:
        os.makedirs(os.path.join(folder, "ground_truth", d))
    # Each image has its own Generator, so threads change the speed, never the pixels;
    # numpy and zlib release the GIL for most of the work.
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        futures = [
            pool.submit(_write_image, folder, category, group, i, size, params["seed"])
            for group, i in jobs
        ]
        for future in futures:
            future.result()


def _stamp(category: str, size: int, params: dict[str, int]) -> dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, "category": category,
            "image_size": size, **params}


def _read_stamp(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def generate_synthetic(
    root: str | os.PathLike,
    categories: list[str] | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    n_train: int = DEFAULT_PARAMS["n_train"],
    n_test_good: int = DEFAULT_PARAMS["n_test_good"],
    n_test_defect: int = DEFAULT_PARAMS["n_test_defect"],
    seed: int = DEFAULT_PARAMS["seed"],
) -> list[str]:
    """Write the synthetic dataset under ``root`` in MVTec layout; return the categories written.

    A category whose stamp already matches the parameters is left alone. A
    category is built in a temporary folder and renamed into place, so a
    killed run never leaves half a category that looks finished.
    """
    root = os.fspath(root)
    categories = list(SYNTHETIC_CATEGORIES) if categories is None else categories
    params = {"n_train": n_train, "n_test_good": n_test_good,
              "n_test_defect": n_test_defect, "seed": seed}
    written = []
    os.makedirs(root, exist_ok=True)
    for category in categories:
        if category not in _SCENES:
            raise ConfigError(f"unknown synthetic category {category!r}; known: "
                              f"{', '.join(SYNTHETIC_CATEGORIES)}")
        target = os.path.join(root, category)
        stamp = _stamp(category, image_size, params)
        if _read_stamp(os.path.join(target, STAMP_NAME)) == stamp:
            continue
        tmp = tempfile.mkdtemp(prefix=f".{category}.tmp-", dir=root)
        try:
            _generate_category(tmp, category, image_size, params)
            with open(os.path.join(tmp, STAMP_NAME), "w", encoding="utf-8") as fh:
                json.dump(stamp, fh, indent=2, sort_keys=True)
                fh.write("\n")
            if os.path.exists(target):
                old = tempfile.mkdtemp(prefix=f".{category}.old-", dir=root)
                os.replace(target, os.path.join(old, category))
                shutil.rmtree(old)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
        written.append(category)
    return written


def _int_param(name: str, key: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"datasets.{name}.{key} must be an int >= {minimum}, got {value!r}")
    return value


@register_dataset("synthetic", categories=SYNTHETIC_CATEGORIES)
def _build_synthetic(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    root = root_of(name, cfg)
    options = cfg.get("synthetic") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"datasets.{name}.synthetic must be a mapping, got {options!r}")
    unknown = sorted(set(options) - set(DEFAULT_PARAMS))
    if unknown:
        raise ConfigError(f"datasets.{name}.synthetic: unknown keys {unknown}; "
                          f"known: {sorted(DEFAULT_PARAMS)}")
    params = {**DEFAULT_PARAMS, **options}
    minimum = {"n_train": 1, "n_test_good": 1, "n_test_defect": 1, "seed": 0}
    for key, value in params.items():
        _int_param(name, f"synthetic.{key}", value, minimum[key])
    size = _int_param(name, "image_size", cfg.get("image_size", DEFAULT_IMAGE_SIZE), 32)
    # Only this category: each image's Generator is seeded by its category, so the
    # pixels are the same as when every category is generated together.
    generate_synthetic(root, [category], image_size=size, **params)
    return scan_category(root, category, masks="required")
