"""Dataset kinds, registered by name, and :func:`build_manifest` which dispatches on them.

A kind is a function ``builder(name, cfg, progress) -> list[Sample]`` that
lists the images of one dataset; the registry then decodes and checks every
image and returns the manifest. Adding a dataset kind is one module with one
decorated function::

    @register_dataset("my_kind", categories=("a", "b"))
    def _build(name: str, cfg: dict, progress: bool) -> list[Sample]:
        ...

``categories`` are the kind's default categories, used when the config
lists none; they are known before any data exists, so the workflow can lay
out its jobs at DAG build (:func:`dataset_categories`). A callable
``categories(name, cfg)`` instead looks them up on disk (``folder``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from diffad.data.manifest import Sample, samples_to_frame, verify_samples
from diffad.data.options import categories_of
from diffad.errors import ConfigError

Builder = Callable[[str, dict[str, Any], bool], list[Sample]]
Categories = Sequence[str] | Callable[[str, dict[str, Any]], list[str]]

_KINDS: dict[str, Builder] = {}
_CATEGORIES: dict[str, Categories] = {}


def register_dataset(kind: str, *, categories: Categories) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` as dataset kind ``kind`` with its default categories."""

    def decorate(builder: Builder) -> Builder:
        if kind in _KINDS:
            raise ValueError(f"dataset kind {kind!r} is registered twice")
        _KINDS[kind] = builder
        _CATEGORIES[kind] = categories
        return builder

    return decorate


def dataset_kinds() -> list[str]:
    """The registered dataset kinds, sorted."""
    return sorted(_KINDS)


def _kind_of(name: str, cfg: dict[str, Any]) -> str:
    if not isinstance(cfg, dict):
        raise ConfigError(f"datasets.{name} must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    if kind not in _KINDS:
        raise ConfigError(
            f"datasets.{name}: unknown dataset kind {kind!r}; known kinds: "
            f"{', '.join(dataset_kinds())}"
        )
    return kind


def dataset_categories(name: str, cfg: dict[str, Any]) -> list[str]:
    """The categories ``build_manifest(name, cfg)`` will cover, without reading any image.

    The listed ``categories``, else the kind's defaults (for ``folder``: the
    category folders under ``root``, which must then exist).
    """
    kind = _kind_of(name, cfg)
    listed = categories_of(name, cfg)
    if listed is not None:
        return listed
    default = _CATEGORIES[kind]
    return default(name, cfg) if callable(default) else list(default)


def build_manifest(name: str, cfg: dict[str, Any], *, progress: bool = True) -> pd.DataFrame:
    """Build the manifest of dataset ``name`` from its config entry ``cfg``.

    Args:
        name: the dataset's key under ``datasets:`` in the config (used in messages).
        cfg: that entry, e.g. ``{"kind": "mvtec_ad", "root": "resources/datasets/mvtec_ad",
            "categories": ["bottle"], "download": True}``.
        progress: show a tqdm bar while every image is decoded.

    Returns:
        The manifest (see :mod:`diffad.data.manifest`), rows in a fixed order.

    Raises:
        ConfigError: unknown kind, or a bad config value.
        DatasetError: the data on disk is missing, unreadable or inconsistent.
        DownloadError: a download failed, has the wrong checksum or an unsafe member.
    """
    kind = _kind_of(name, cfg)
    samples = _KINDS[kind](name, cfg, progress)
    samples = verify_samples(samples, desc=f"{name}: decoding images", progress=progress)
    return samples_to_frame(samples)
