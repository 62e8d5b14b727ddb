"""COCO-AD (``coco_ad``, local only): the general-purpose benchmark of InvAD.

COCO-AD (Zhang et al., "Learning Feature Inversion for Multi-class Anomaly
Detection under General-purpose COCO-AD Benchmark") splits the 80 COCO
classes into 4 folds of 20: images holding only the other 60 classes are
normal, images holding a class of the fold are anomalous and their masks
are that class's instance masks. Its generator (``data/gen_benchmark/coco.py``
of https://github.com/zhangzjn/ADer) writes, beside COCO 2017::

    <root>/train2017/, <root>/val2017/, <root>/annotations/
    <root>/meta_20_<k>.json            k = 0..3
    <root>/val2017_mask_ad_20_<k>/<id>.png

Each ``meta_20_<k>.json`` is ``{"train": {"coco": [...]}, "test": {"coco": [...]}}``
with entries ``{img_path, mask_path, cls_name, specie_name, anomaly}``
(paths relative to ``<root>``, ``anomaly`` 0/1, ``mask_path`` "" when normal).

The four folds are this kind's categories ``split_0`` .. ``split_3``, so
the tables report each fold and their mean as the paper does. Config key
``ano_num`` (default 20) selects ``meta_<ano_num>_<k>.json``; each fold's
manifest reads only its own meta file.
"""

from __future__ import annotations

import os
import re
from typing import Any

from diffad.data.manifest import SPLITS, Sample, listed_sample, read_split_file
from diffad.data.options import require_root, root_of
from diffad.data.registry import Listing, register_dataset
from diffad.errors import ConfigError, DatasetError

COCO_AD_CATEGORIES = ("split_0", "split_1", "split_2", "split_3")
ANOMALY_DEFECT = "anomaly"
_HOW_TO_GET = (
    "COCO-AD is built locally: download COCO 2017 (train2017, val2017, annotations) from "
    "https://cocodataset.org into the root and run data/gen_benchmark/coco.py of "
    "https://github.com/zhangzjn/ADer there to write meta_20_<k>.json and "
    "val2017_mask_ad_20_<k>/ (k = 0..3)."
)


def read_meta_json(path: str, root: str, category: str) -> list[Sample]:
    """The images listed in one COCO-AD meta file, as rows of ``category``.

    Raises:
        DatasetError: the file is missing or malformed, or an anomalous test
            image has no mask (naming the file and the image).
    """
    data = read_split_file(path, f"COCO-AD meta file for category {category!r}:", _HOW_TO_GET)
    if not isinstance(data, dict) or not all(isinstance(data.get(s), dict) for s in SPLITS):
        raise DatasetError(f"COCO-AD meta file {path} needs 'train' and 'test' mappings")
    samples = []
    for split in SPLITS:
        for cls_name, entries in sorted(data[split].items()):
            for i, entry in enumerate(entries):
                try:
                    image, label = entry["img_path"], int(entry["anomaly"])
                except (TypeError, KeyError, ValueError) as exc:
                    raise DatasetError(
                        f"{path}: {split}.{cls_name}[{i}] lacks img_path or anomaly"
                    ) from exc
                samples.append(listed_sample(
                    path, root, image, entry.get("mask_path"), label, category, split,
                    ANOMALY_DEFECT, mask_key="mask_path",
                ))
    return samples


def _check_fold(name: str, cfg: dict[str, Any], category: str) -> None:
    # Open-ended: the number of folds follows ano_num, so any split_<k> may exist.
    if re.fullmatch(r"split_(\d+)", category) is None:
        raise ConfigError(
            f"datasets.{name}: COCO-AD category {category!r} is not split_<k> "
            f"(known: {', '.join(COCO_AD_CATEGORIES)})"
        )


def _require_coco_ad(name: str, cfg: dict[str, Any], progress: bool) -> None:
    require_root(root_of(name, cfg), _HOW_TO_GET)


@register_dataset(
    "coco_ad", categories=COCO_AD_CATEGORIES, check=_check_fold, download=_require_coco_ad
)
def _build_coco_ad(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    root = root_of(name, cfg)
    require_root(root, _HOW_TO_GET)
    ano_num = cfg.get("ano_num", 20)
    if not isinstance(ano_num, int) or isinstance(ano_num, bool) or ano_num <= 0:
        raise ConfigError(f"datasets.{name}.ano_num must be a positive int, got {ano_num!r}")
    fold = int(category.removeprefix("split_"))
    meta = os.path.join(root, f"meta_{ano_num}_{fold}.json")
    return Listing(read_meta_json(meta, root, category), source=meta)
