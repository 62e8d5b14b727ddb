"""MVTec-layout folders: the ``folder`` kind and the scanner that other kinds reuse.

Layout, per category (one manifest each, reading only its own folder)::

    <root>/<category>/train/good/<image>
    <root>/<category>/test/good/<image>
    <root>/<category>/test/<defect>/<image>
    <root>/<category>/ground_truth/<defect>/<stem>_mask.<ext>   (optional for ``folder``)

Images are matched to masks by name: ``<stem>_mask.<ext>`` as in MVTec AD
and MPDD, else ``<stem>.<ext>`` (as some MVTec-style exports write them).
Accepted extensions: :data:`~diffad.data.images.IMAGE_EXTENSIONS`, any case.

Masks: with ``masks="required"`` (MVTec AD, MPDD, synthetic) every anomalous
test image needs its mask. With ``masks="optional"`` (``folder``) a
category without a ``ground_truth`` folder is image-level only (mask_path
null, so pixel metrics are unavailable downstream), but a category that has
one needs a mask for every anomalous test image.

The ``folder`` kind's categories are the subfolders of ``root`` holding a
``train`` or ``test`` folder; their names must be valid category names
(:data:`~diffad.data.options.CATEGORY_PATTERN`), checked when they are
found, at DAG build.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from diffad.data.images import is_image_file
from diffad.data.manifest import NORMAL_DEFECT, Sample
from diffad.data.options import (
    ALLOWED_CATEGORY_NAMES,
    category_name_problem,
    require_root,
    root_of,
)
from diffad.data.registry import Listing, register_dataset
from diffad.errors import DatasetError

MaskPolicy = Literal["required", "optional"]

_MVTEC_LAYOUT = (
    "expected MVTec layout: <root>/<category>/train/good/*.png, <root>/<category>/test/"
    "<defect>/*.png, <root>/<category>/ground_truth/<defect>/<stem>_mask.png"
)


def _image_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    with os.scandir(folder) as it:
        # Dot files are skipped: archives made on macOS carry "._000.png" resource forks.
        return sorted(
            e.name for e in it
            if e.is_file() and is_image_file(e.name) and not e.name.startswith(".")
        )


def _subfolders(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _mask_index(folder: str) -> dict[str, str]:
    """Map image stem -> mask file name in one ``ground_truth/<defect>`` folder."""
    index: dict[str, str] = {}
    plain: dict[str, str] = {}
    for fname in _image_files(folder):
        stem = os.path.splitext(fname)[0]
        if stem.endswith("_mask"):
            index.setdefault(stem[: -len("_mask")], fname)
        else:
            plain.setdefault(stem, fname)
    for stem, fname in plain.items():
        index.setdefault(stem, fname)
    return index


def find_categories(root: str) -> list[str]:
    """Subfolders of ``root`` that hold a ``train`` or ``test`` folder, names checked.

    Raises:
        DatasetError: such a folder's name is not allowed as a category
            (naming the folder and the allowed characters).
    """
    found = [
        c
        for c in _subfolders(root)
        if os.path.isdir(os.path.join(root, c, "train"))
        or os.path.isdir(os.path.join(root, c, "test"))
    ]
    for category in found:
        problem = category_name_problem(category)
        if problem is not None:
            raise DatasetError(
                f"category folder {os.path.join(root, category)!r}: the name {problem}; a "
                f"category name may hold {ALLOWED_CATEGORY_NAMES}. Rename the folder"
            )
    return found


def scan_category(root: str, category: str, masks: MaskPolicy) -> Listing:
    """List the images of one category of an MVTec-layout folder, reading only its folder.

    The listing's source is the category's ``test`` folder (named by the
    split checks of :func:`~diffad.data.manifest.check_splits`).

    Raises:
        DatasetError: the category folder is missing, its train split is
            empty, it has no test images, or an anomalous test image has no
            mask where masks are needed.
    """
    cat_dir = os.path.join(root, category)
    if not os.path.isdir(cat_dir):
        raise DatasetError(f"category {category!r} not found: no folder {cat_dir}")
    train_dir = os.path.join(cat_dir, "train", NORMAL_DEFECT)
    samples = [
        Sample(os.path.join(train_dir, f), category, "train", 0, NORMAL_DEFECT)
        for f in _image_files(train_dir)
    ]
    if not samples:
        raise DatasetError(
            f"category {category!r} has an empty train split: no images in {train_dir}"
        )
    test_dir = os.path.join(cat_dir, "test")
    gt_dir = os.path.join(cat_dir, "ground_truth")
    needs_masks = masks == "required" or os.path.isdir(gt_dir)
    n_test = 0
    for defect in _subfolders(test_dir):
        defect_dir = os.path.join(test_dir, defect)
        label = 0 if defect == NORMAL_DEFECT else 1
        mask_dir = os.path.join(gt_dir, defect)
        index = _mask_index(mask_dir) if label else {}
        for fname in _image_files(defect_dir):
            n_test += 1
            mask_path = None
            if label:
                stem = os.path.splitext(fname)[0]
                if stem in index:
                    mask_path = os.path.join(mask_dir, index[stem])
                elif needs_masks:
                    raise DatasetError(
                        f"anomalous test image {os.path.join(defect_dir, fname)} has no mask: "
                        f"expected {os.path.join(mask_dir, stem + '_mask.png')}"
                    )
            samples.append(
                Sample(os.path.join(defect_dir, fname), category, "test", label, defect, mask_path)
            )
    if n_test == 0:
        raise DatasetError(
            f"category {category!r} has no test images: nothing in {test_dir}/<defect>/"
        )
    return Listing(samples, source=test_dir)


def _folder_root(name: str, cfg: dict[str, Any]) -> str:
    root = root_of(name, cfg)
    require_root(root, f"datasets.{name} (kind folder) needs an existing folder; {_MVTEC_LAYOUT}.")
    return root


def _found_categories(name: str, cfg: dict[str, Any]) -> list[str]:
    root = _folder_root(name, cfg)
    categories = find_categories(root)
    if not categories:
        raise DatasetError(f"no categories found in {root}; {_MVTEC_LAYOUT}")
    return categories


def _check_folder_category(name: str, cfg: dict[str, Any], category: str) -> None:
    # A listed category is checked against the disk only when the root exists: a
    # missing root is reported by the manifest (and download_dataset) with its hint.
    root = root_of(name, cfg)
    if os.path.isdir(root) and not os.path.isdir(os.path.join(root, category)):
        raise DatasetError(
            f"datasets.{name}: category {category!r} not found: no folder "
            f"{os.path.join(root, category)}"
        )


def _require_folder(name: str, cfg: dict[str, Any], progress: bool) -> None:
    _folder_root(name, cfg)


@register_dataset(
    "folder", categories=_found_categories, check=_check_folder_category,
    download=_require_folder,
)
def _build_folder(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    return scan_category(_folder_root(name, cfg), category, masks="optional")
