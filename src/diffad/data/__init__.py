"""Datasets: per-category manifests, image and mask loaders, downloads, the synthetic default.

Public API::

    dataset_categories(name, cfg) -> list[str]          # cheap, for the DAG; checks the names
    download_dataset(name, cfg) -> None                 # once per dataset, before its manifests
    build_manifest(name, cfg, category, *, progress=True) -> DataFrame   # one category
    write_manifest(df, path); read_manifest(path) -> DataFrame
    read_manifests(paths) -> DataFrame                  # dataset-level view (category `all`)
    check_unchanged(rows, manifest_path) -> None        # images still as the manifest saw them
    MANIFEST_COLUMNS, CATEGORY_PATTERN
    load_image(path, size) -> float32 HxWx3 in [0, 1]
    load_mask(path, size) -> bool HxW

One manifest per (dataset, category) (:data:`diffad.paths.PATHS` ``.manifest``):
a category's manifest reads only its own folder (or its entries of the split
file), so a broken category fails alone and adding one builds only its own.

Dataset kinds register by name with :func:`register_dataset`; importing this
package registers the built-in ones: ``synthetic``, ``folder``, ``mvtec_ad``,
``mpdd``, ``visa``, ``real_iad`` and ``coco_ad``.
"""

from diffad.data import coco_ad, folder, mvtec, real_iad, synthetic, visa  # noqa: F401
from diffad.data.images import IMAGE_EXTENSIONS, load_image, load_mask
from diffad.data.manifest import (
    MANIFEST_COLUMNS,
    check_unchanged,
    read_manifest,
    read_manifests,
    write_manifest,
)
from diffad.data.options import ALL_CATEGORIES, CATEGORY_PATTERN
from diffad.data.registry import (
    Listing,
    build_manifest,
    dataset_categories,
    dataset_kinds,
    download_dataset,
    register_dataset,
)
from diffad.data.synthetic import generate_synthetic

__all__ = [
    "ALL_CATEGORIES",
    "CATEGORY_PATTERN",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "Listing",
    "build_manifest",
    "check_unchanged",
    "dataset_categories",
    "dataset_kinds",
    "download_dataset",
    "generate_synthetic",
    "load_image",
    "load_mask",
    "read_manifest",
    "read_manifests",
    "register_dataset",
    "write_manifest",
]
