"""The manifests: one table per (dataset, category), one row per image, read by every later stage.

Files: one per category (:data:`diffad.paths.PATHS` ``.manifest``), each built from that
category's folder (or its entries of the split file) only, so a broken
category fails alone and adding one builds only its own manifest. Methods
that train once per dataset read the dataset-level view,
:func:`read_manifests` of every category's manifest.

Columns (:data:`MANIFEST_COLUMNS`):

``image_path`` (str), ``category`` (str), ``split`` ("train" | "test"),
``label`` (int8, 0 normal / 1 anomalous), ``defect_type`` (str, "good" for
normal images), ``mask_path`` (str, or None where there is no mask),
``width``, ``height`` (int32, the image's own size on disk), ``size``
(int64, the image file's size in bytes) and ``mtime_ns`` (int64, its
modification time in ns), both taken by ``os.stat`` when the manifest was
built.

``size`` and ``mtime_ns`` fingerprint the images: a job that reads them
first calls :func:`check_unchanged`, which stats the files again (no
decoding) and fails, naming the changed files and the command that
rebuilds the category's manifest, when an image was replaced, truncated or
deleted after the manifest checked it. Masks are not fingerprinted.

Building one takes four steps, shared by every dataset kind:

1. the kind lists candidate rows (:class:`Sample`) of one category from its layout;
2. :func:`check_splits` requires train images and a test split holding
   both normal and anomalous images, naming the category and the folder or
   split file;
3. :func:`verify_samples` stats and decodes every image and mask (threads,
   progress bar), fills in the sizes and fingerprints and checks that each
   mask matches its image;
4. :func:`samples_to_frame` sets the dtypes and sorts the rows by
   category, split, defect type and image path, so the order is the same on
   every machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from diffad.data.images import image_size
from diffad.errors import DatasetError
from diffad.io import write_parquet
from diffad.logs import progress as report_progress

MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_path",
    "category",
    "split",
    "label",
    "defect_type",
    "mask_path",
    "width",
    "height",
    "size",
    "mtime_ns",
)

SPLITS = ("train", "test")
NORMAL_DEFECT = "good"
_SORT_KEYS = ["category", "split", "defect_type", "image_path"]
# How many changed files check_unchanged names before "... and N more".
_SHOW_CHANGED = 5


@dataclass
class Sample:
    """One image of a dataset before its sizes and fingerprint are known."""

    image_path: str
    category: str
    split: str
    label: int
    defect_type: str
    mask_path: str | None = None
    width: int = -1
    height: int = -1
    size: int = -1
    mtime_ns: int = -1


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


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError as exc:
        raise DatasetError(f"image file not found: {path}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot stat image {path}: {exc}") from exc


def _verify_one(sample: Sample) -> Sample:
    # Stat before decoding: a file replaced in between then differs from the
    # recorded fingerprint, and check_unchanged catches it.
    st = _stat(sample.image_path)
    width, height = image_size(sample.image_path)
    if sample.mask_path is not None:
        mask_w, mask_h = image_size(sample.mask_path)
        if (mask_w, mask_h) != (width, height):
            raise DatasetError(
                f"mask {sample.mask_path} is {mask_w}x{mask_h} pixels but its image "
                f"{sample.image_path} is {width}x{height}"
            )
    sample.width, sample.height = width, height
    sample.size, sample.mtime_ns = st.st_size, st.st_mtime_ns
    return sample


def verify_samples(
    samples: Sequence[Sample], *, desc: str = "checking images", progress: bool = True
) -> list[Sample]:
    """Stat and decode every image and mask of ``samples``; fill in sizes and fingerprints.

    Raises:
        DatasetError: an image or mask is missing, unreadable or truncated
            (the file is named), or a mask's size differs from its image's.
    """
    workers = max(1, min(8, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        # map() keeps the input order: the first bad file in manifest order is reported.
        done = pool.map(_verify_one, samples)
        if not progress:
            return list(done)
        return list(report_progress(done, desc=desc, total=len(samples), unit="img"))
    finally:
        # On an error, do not decode the rest of a large dataset before reporting it.
        pool.shutdown(wait=True, cancel_futures=True)


def check_splits(samples: Iterable[Sample], category: str, where: str) -> None:
    """Require train images, and test images both normal and anomalous, of ``category``.

    Without both kinds of test image no AUROC can be computed, so a split
    like that is refused here rather than in the evaluation. ``where`` names
    the folder or split file the rows came from.

    Raises:
        DatasetError: naming the category, ``where`` and what is missing.
    """
    counts = {"train": 0, "normal": 0, "anomalous": 0}
    for s in samples:
        if s.category != category:
            continue
        if s.split == "train":
            counts["train"] += 1
        else:
            counts["anomalous" if s.label else "normal"] += 1
    if counts["train"] == 0:
        raise DatasetError(f"category {category!r} has an empty train split (no images in "
                           f"{where})")
    if counts["normal"] == 0 and counts["anomalous"] == 0:
        raise DatasetError(f"category {category!r} has an empty test split (no images in "
                           f"{where})")
    for kind, other in (("normal", "anomalous"), ("anomalous", "normal")):
        if counts[kind] == 0:
            raise DatasetError(
                f"category {category!r} has no {kind} test images in {where} (only "
                f"{counts[other]} {other} ones); detection metrics need both normal and "
                f"anomalous test images"
            )


def samples_to_frame(samples: Iterable[Sample]) -> pd.DataFrame:
    """The manifest DataFrame of ``samples``: exact columns, dtypes and row order."""
    rows = [
        (s.image_path, s.category, s.split, s.label, s.defect_type, s.mask_path, s.width,
         s.height, s.size, s.mtime_ns)
        for s in samples
    ]
    df = pd.DataFrame.from_records(rows, columns=list(MANIFEST_COLUMNS))
    df = coerce_manifest(df)
    return df.sort_values(_SORT_KEYS, kind="stable", ignore_index=True)


def coerce_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Give ``df`` the manifest's columns and dtypes; raise DatasetError on a wrong table.

    Text columns get pandas' default string dtype; ``mask_path`` stays an
    object column whose missing entries are ``None`` (not NaN), so
    ``row.mask_path is None`` works on every pandas version. A manifest
    written before ``size``/``mtime_ns`` existed is refused (missing columns):
    rebuild it.
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
    out["size"] = df["size"].astype(np.int64)
    out["mtime_ns"] = df["mtime_ns"].astype(np.int64)
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
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"manifest {path} not found; build it with `snakemake {path}`")
    return coerce_manifest(pd.read_parquet(path, engine="pyarrow"), source=path)


def read_manifests(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The dataset-level view: the per-category manifests ``paths`` as one table.

    Rows are sorted like one manifest (category, split, defect type, image
    path), so the result does not depend on the order of ``paths``.

    Raises:
        DatasetError: no paths, a missing or malformed manifest (named), or
            one category in two of them (both named).
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise DatasetError("read_manifests: no manifest paths given")
    frames, owner = [], {}
    for path in paths:
        df = read_manifest(path)
        for category in df["category"].unique():
            if category in owner:
                raise DatasetError(
                    f"category {category!r} is in two manifests: {owner[category]} and {path}"
                )
            owner[category] = path
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(_SORT_KEYS, kind="stable", ignore_index=True)


def _describe_change(path: str, size: int, mtime_ns: int) -> str | None:
    """How the file at ``path`` differs from its recorded ``size`` and ``mtime_ns``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{path} (size {size} bytes when the manifest was built; now unreadable: " \
               f"{exc.strerror or exc})"
    if st.st_size == size and st.st_mtime_ns == mtime_ns:
        return None
    return (f"{path} (size {size} -> {st.st_size} bytes, mtime_ns {mtime_ns} -> "
            f"{st.st_mtime_ns})")


def check_unchanged(
    rows: pd.DataFrame, manifest_path: str | os.PathLike | Mapping[str, str]
) -> None:
    """Fail if an image of ``rows`` changed since its manifest was built (``os.stat`` only).

    A job that reads images calls this first, on the rows it will read, so
    an image replaced, truncated or deleted after the manifest decoded it
    fails with a message rather than feeding a model different pixels.

    Args:
        rows: manifest rows (needs ``image_path``, ``category``, ``size``, ``mtime_ns``).
        manifest_path: the manifest the rows came from, or for rows of the
            dataset-level view a mapping from category to its manifest.

    Raises:
        DatasetError: naming the first changed files (old vs new size and
            mtime) and the command that rebuilds the manifest(s):
            ``snakemake --forcerun <manifest_path>``.
    """
    missing = [c for c in ("image_path", "category", "size", "mtime_ns") if c not in rows]
    if missing:
        raise DatasetError(f"check_unchanged: rows of {manifest_path} lack columns {missing}")
    changed: list[str] = []
    stale: list[str] = []
    n_changed = 0
    for path, category, size, mtime_ns in zip(
        rows["image_path"], rows["category"], rows["size"], rows["mtime_ns"], strict=True
    ):
        change = _describe_change(path, int(size), int(mtime_ns))
        if change is None:
            continue
        n_changed += 1
        if len(changed) < _SHOW_CHANGED:
            changed.append(change)
        manifest = (manifest_path.get(category, f"<manifest of {category}>")
                    if isinstance(manifest_path, Mapping) else os.fspath(manifest_path))
        if manifest not in stale:
            stale.append(manifest)
    if not n_changed:
        return
    more = f"; ... and {n_changed - len(changed)} more" if n_changed > len(changed) else ""
    built = f"{stale[0]} was" if len(stale) == 1 else f"{', '.join(stale)} were"
    raise DatasetError(
        f"{n_changed} image(s) changed since {built} built: {'; '.join(changed)}{more}. "
        f"Rebuild the manifest and what depends on it with: "
        f"snakemake --forcerun {' '.join(stale)}"
    )
