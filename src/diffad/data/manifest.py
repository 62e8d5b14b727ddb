"""The dataset manifest: one row per image, the table every later stage reads.

Columns (:data:`MANIFEST_COLUMNS`):

``image_path`` (str), ``category`` (str), ``split`` ("train" | "test"),
``label`` (int8, 0 normal / 1 anomalous), ``defect_type`` (str, "good" for
normal images), ``mask_path`` (str, or None where there is no mask),
``width``, ``height`` (int32, the image's own size on disk).

Building one takes three steps, shared by every dataset kind:

1. the kind lists candidate rows (:class:`Sample`) from its layout;
2. :func:`verify_samples` decodes every image and mask (threads, progress
   bar), fills in the sizes and checks that each mask matches its image;
3. :func:`samples_to_frame` sets the dtypes and sorts the rows by
   category, split, defect type and image path, so the order is the same on
   every machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from diffad.data.images import image_size
from diffad.errors import DatasetError
from diffad.io import write_parquet

MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_path",
    "category",
    "split",
    "label",
    "defect_type",
    "mask_path",
    "width",
    "height",
)

SPLITS = ("train", "test")
NORMAL_DEFECT = "good"
_SORT_KEYS = ["category", "split", "defect_type", "image_path"]


@dataclass
class Sample:
    """One image of a dataset before its sizes are known."""

    image_path: str
    category: str
    split: str
    label: int
    defect_type: str
    mask_path: str | None = None
    width: int = -1
    height: int = -1


def read_split_file(path: str, what: str, hint: str = "") -> Any:
    """Parse the JSON split file ``path`` (a ``what``, e.g. "Real-IAD split file").

    Raises:
        DatasetError: naming the file when it is missing or not valid JSON.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{what} {path} not found{'. ' + hint if hint else ''}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from exc


def listed_sample(source: str, base: str, image: str, mask: str | None, label: int,
                  category: str, split: str, defect_type: str, mask_key: str) -> Sample:
    """A :class:`Sample` for one entry of the split file ``source``, paths joined onto
    ``base``. An anomalous test image must list its mask (``mask_key`` in the file)."""
    image_path = os.path.join(base, image)
    if label and split == "test" and not mask:
        raise DatasetError(f"{source}: anomalous test image {image_path} has no {mask_key}")
    return Sample(
        image_path=image_path,
        category=category,
        split=split,
        label=label,
        defect_type=defect_type if label else NORMAL_DEFECT,
        mask_path=os.path.join(base, mask) if label and mask else None,
    )


def _verify_one(sample: Sample) -> Sample:
    width, height = image_size(sample.image_path)
    if sample.mask_path is not None:
        mask_w, mask_h = image_size(sample.mask_path)
        if (mask_w, mask_h) != (width, height):
            raise DatasetError(
                f"mask {sample.mask_path} is {mask_w}x{mask_h} pixels but its image "
                f"{sample.image_path} is {width}x{height}"
            )
    sample.width, sample.height = width, height
    return sample


def verify_samples(
    samples: Sequence[Sample], *, desc: str = "checking images", progress: bool = True
) -> list[Sample]:
    """Decode every image and mask of ``samples``; fill in width and height.

    Raises:
        DatasetError: an image or mask is unreadable or truncated (the file is
            named), or a mask's size differs from its image's.
    """
    workers = max(1, min(8, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        # map() keeps the input order: the first bad file in manifest order is reported.
        done = pool.map(_verify_one, samples)
        return list(tqdm(done, total=len(samples), desc=desc, unit="img", disable=not progress))
    finally:
        # On an error, do not decode the rest of a large dataset before reporting it.
        pool.shutdown(wait=True, cancel_futures=True)


def check_splits(samples: Iterable[Sample], categories: Iterable[str], where: str) -> None:
    """Every category needs train images and test images; ``where`` names the folder or file."""
    counts: dict[tuple[str, str], int] = {}
    for s in samples:
        counts[(s.category, s.split)] = counts.get((s.category, s.split), 0) + 1
    for category in categories:
        for split in SPLITS:
            if counts.get((category, split), 0) == 0:
                raise DatasetError(
                    f"category {category!r} has an empty {split} split (no images in {where})"
                )


def samples_to_frame(samples: Iterable[Sample]) -> pd.DataFrame:
    """The manifest DataFrame of ``samples``: exact columns, dtypes and row order."""
    rows = [
        (s.image_path, s.category, s.split, s.label, s.defect_type, s.mask_path, s.width, s.height)
        for s in samples
    ]
    df = pd.DataFrame.from_records(rows, columns=list(MANIFEST_COLUMNS))
    df = coerce_manifest(df)
    return df.sort_values(_SORT_KEYS, kind="stable", ignore_index=True)


def coerce_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Give ``df`` the manifest's columns and dtypes; raise DatasetError on a wrong table.

    Text columns get pandas' default string dtype; ``mask_path`` stays an
    object column whose missing entries are ``None`` (not NaN), so
    ``row.mask_path is None`` works on every pandas version.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    if missing or extra:
        raise DatasetError(
            f"{source} has wrong columns: missing {missing}, unexpected {extra}; "
            f"expected {list(MANIFEST_COLUMNS)}"
        )
    out = pd.DataFrame(index=df.index)
    for col in ("image_path", "category", "split", "defect_type"):
        out[col] = df[col].astype(str)
    out["label"] = df["label"].astype(np.int8)
    mask = df["mask_path"].astype(object)
    out["mask_path"] = mask.where(mask.notna(), None).astype(object)
    out["width"] = df["width"].astype(np.int32)
    out["height"] = df["height"].astype(np.int32)
    bad_split = sorted(set(out["split"]) - set(SPLITS))
    if bad_split:
        raise DatasetError(f"{source} has unknown split values {bad_split}; expected {SPLITS}")
    return out[list(MANIFEST_COLUMNS)]


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the manifest ``df`` to Parquet at ``path`` atomically."""
    write_parquet(coerce_manifest(df), path)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, with its dtypes restored.

    Raises:
        DatasetError: the file is missing or does not hold a manifest.
    """
    if not os.path.isfile(path):
        raise DatasetError(
            f"manifest {os.fspath(path)} not found; build it with the data rule "
            f"(snakemake results/data/<dataset>/manifest.parquet)"
        )
    return coerce_manifest(pd.read_parquet(path, engine="pyarrow"), source=os.fspath(path))
