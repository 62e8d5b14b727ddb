"""Dataset kinds, registered by name, and the functions that dispatch on them.

A kind is a function ``builder(name, cfg, category, progress) -> Listing``
that lists the images of ONE category of a dataset, reading only that
category's folder or its entries of the split file, and says where they
came from; the registry then checks the splits, decodes and checks every
image and returns the category's manifest. Adding a dataset kind is one
module with one decorated function::

    @register_dataset("my_kind", categories=("a", "b"))
    def _build(name: str, cfg: dict, category: str, progress: bool) -> Listing:
        ...
        return Listing(samples, source=folder_or_split_file)

``categories`` are the kind's categories, used when the config lists none;
they are known before any data exists, so the workflow can lay out its jobs
at DAG build (:func:`dataset_categories`), and a listed category outside
them is refused there. A callable ``categories(name, cfg)`` instead looks
them up on disk (``folder``). ``check(name, cfg, category)``, where given,
replaces the membership test: it raises for a category the dataset cannot
have, without reading images. ``download(name, cfg, progress)``, where
given, makes sure the dataset's files are there (fetching them if the
config says ``download: true``); :func:`download_dataset` runs it once per
dataset, before the per-category manifests, which never download.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from diffad.data.manifest import Sample, check_splits, samples_to_frame, verify_samples
from diffad.data.options import ALLOWED_CATEGORY_NAMES, categories_of, category_name_problem
from diffad.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Listing:
    """The rows of one category before decoding, and the folder or file they were read from."""

    samples: list[Sample]
    source: str


Builder = Callable[[str, dict[str, Any], str, bool], Listing]
Categories = Sequence[str] | Callable[[str, dict[str, Any]], list[str]]
Check = Callable[[str, dict[str, Any], str], None]
Download = Callable[[str, dict[str, Any], bool], None]


@dataclass(frozen=True)
class _Kind:
    builder: Builder
    categories: Categories
    check: Check | None
    download: Download | None


_KINDS: dict[str, _Kind] = {}


def register_dataset(
    kind: str, *, categories: Categories, check: Check | None = None,
    download: Download | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` as dataset kind ``kind`` (see the module docstring)."""

    def decorate(builder: Builder) -> Builder:
        if kind in _KINDS:
            raise ValueError(f"dataset kind {kind!r} is registered twice")
        _KINDS[kind] = _Kind(builder, categories, check, download)
        return builder

    return decorate


def dataset_kinds() -> list[str]:
    """The registered dataset kinds, sorted."""
    return sorted(_KINDS)


def _kind_of(name: str, cfg: dict[str, Any]) -> _Kind:
    if not isinstance(cfg, dict):
        raise ConfigError(f"datasets.{name} must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    if kind not in _KINDS:
        raise ConfigError(
            f"datasets.{name}: unknown dataset kind {kind!r}; known kinds: "
            f"{', '.join(dataset_kinds())}"
        )
    return _KINDS[kind]


def _check_known(name: str, cfg: dict[str, Any], kind: _Kind, category: str) -> None:
    """Raise if ``category`` is one the dataset cannot have (known without reading images)."""
    if kind.check is not None:
        kind.check(name, cfg, category)
    elif not callable(kind.categories) and category not in kind.categories:
        raise ConfigError(
            f"datasets.{name}: {cfg['kind']} has no category {category!r}; its categories: "
            f"{', '.join(kind.categories)}"
        )


def dataset_categories(name: str, cfg: dict[str, Any]) -> list[str]:
    """The categories of dataset ``name``, one manifest each, without reading any image.

    The listed ``categories``, else the kind's own (for ``folder``: the
    category folders under ``root``, which must then exist). Every name is
    checked: allowed characters (:data:`~diffad.data.options.CATEGORY_PATTERN`),
    and for kinds with a fixed set of categories, membership.

    Raises:
        ConfigError: unknown kind, a malformed ``categories`` list, a listed
            name with characters outside the allowed ones or that the kind
            does not have.
        DatasetError: a ``folder`` dataset's root is missing, has no
            categories, a category folder whose name is not allowed (the
            folder is named), or lacks a listed category's folder.
    """
    kind = _kind_of(name, cfg)
    listed = categories_of(name, cfg)
    if listed is None:
        default = kind.categories
        return default(name, cfg) if callable(default) else list(default)
    for category in listed:
        _check_known(name, cfg, kind, category)
    return listed


def download_dataset(name: str, cfg: dict[str, Any], *, progress: bool = True) -> None:
    """Make sure the files of dataset ``name`` are on disk, downloading them where configured.

    Run once per dataset before its per-category manifests (which never
    download). Idempotent: when the data is already there it returns at
    once. Kinds with an official URL (``mvtec_ad``, ``visa``) download and
    extract it if ``download: true``; local-only kinds check that ``root``
    exists; ``synthetic`` does nothing (each category is generated by its
    own :func:`build_manifest`).

    Raises:
        ConfigError: unknown kind, or a malformed ``url``/``sha256``.
        DatasetError: the data is missing and cannot be downloaded (the
            message says how to get it).
        DownloadError: a download failed, has the wrong checksum or an unsafe member.
    """
    kind = _kind_of(name, cfg)
    if kind.download is not None:
        kind.download(name, cfg, progress)


def build_manifest(
    name: str, cfg: dict[str, Any], category: str, *, progress: bool = True
) -> pd.DataFrame:
    """Build the manifest of one category of dataset ``name`` from its config entry ``cfg``.

    Reads only that category's folder (or its entries of the split file)
    and decodes only its images, so another category's broken files never
    stop it. Nothing is downloaded (see :func:`download_dataset`); the
    ``synthetic`` kind generates the category's images if they are missing.

    Args:
        name: the dataset's key under ``datasets:`` in the config (used in messages).
        cfg: that entry, e.g. ``{"kind": "mvtec_ad", "root": "resources/datasets/mvtec_ad",
            "categories": ["bottle"], "download": True}``.
        category: one of :func:`dataset_categories` (checked as cheaply as there).
        progress: show a tqdm bar while every image is decoded.

    Returns:
        The manifest (see :mod:`diffad.data.manifest`), rows in a fixed order.

    Raises:
        ConfigError: unknown kind, a bad config value, or a category the
            dataset does not have.
        DatasetError: the category's data on disk is missing, unreadable or
            inconsistent, or its test split lacks normal or anomalous images.
    """
    kind = _kind_of(name, cfg)
    problem = category_name_problem(category) if isinstance(category, str) else "is not a str"
    if problem is not None:
        raise ConfigError(f"datasets.{name}: category {category!r} {problem}; a category name "
                          f"may hold {ALLOWED_CATEGORY_NAMES}")
    listed = categories_of(name, cfg)
    if listed is not None and category not in listed:
        raise ConfigError(f"datasets.{name}: category {category!r} is not among its listed "
                          f"categories {listed}")
    _check_known(name, cfg, kind, category)
    listing = kind.builder(name, cfg, category, progress)
    check_splits(listing.samples, category, listing.source)
    samples = verify_samples(
        listing.samples, desc=f"{name}/{category}: decoding images", progress=progress
    )
    frame = samples_to_frame(samples)
    log.info("%s", describe(frame, f"{name}/{category} ({listing.source})"))
    return frame


def describe(manifest: pd.DataFrame, what: str) -> str:
    """One line: images per split, normal / anomalous, defect types, masks."""
    test = manifest[manifest["split"] == "test"]
    anomalous = test[test["label"] == 1]
    return (f"{what}: {int((manifest['split'] == 'train').sum())} train images, "
            f"{len(test)} test ({len(test) - len(anomalous)} normal, {len(anomalous)} anomalous "
            f"in {anomalous['defect_type'].nunique()} defect types, "
            f"{int(anomalous['mask_path'].notna().sum())} masks)")
