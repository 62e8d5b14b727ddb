"""Datasets: manifests, the image and mask loaders, downloads and the synthetic default.

Public API::

    build_manifest(name, cfg, *, progress=True) -> DataFrame   # dispatch on cfg["kind"]
    dataset_categories(name, cfg) -> list[str]                 # cheap, for the DAG
    write_manifest(df, path); read_manifest(path) -> DataFrame
    MANIFEST_COLUMNS
    load_image(path, size) -> float32 HxWx3 in [0, 1]
    load_mask(path, size) -> bool HxW

Dataset kinds register by name with :func:`register_dataset`; importing this
package registers the built-in ones: ``synthetic``, ``folder``, ``mvtec_ad``,
``mpdd``, ``visa``, ``real_iad`` and ``coco_ad``.
"""

from diffad.data import coco_ad, folder, mvtec, real_iad, synthetic, visa  # noqa: F401
from diffad.data.images import IMAGE_EXTENSIONS, load_image, load_mask
from diffad.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from diffad.data.registry import (
    build_manifest,
    dataset_categories,
    dataset_kinds,
    register_dataset,
)
from diffad.data.synthetic import generate_synthetic

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "build_manifest",
    "dataset_categories",
    "dataset_kinds",
    "generate_synthetic",
    "load_image",
    "load_mask",
    "read_manifest",
    "register_dataset",
    "write_manifest",
]
