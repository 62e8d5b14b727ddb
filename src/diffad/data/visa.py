"""VisA (``visa``): the standard one-class split read from ``split_csv/1cls.csv``.

Layout as published (Zou et al. 2022, amazon-science/spot-diff)::

    <root>/<object>/Data/Images/{Normal,Anomaly}/<n>.JPG
    <root>/<object>/Data/Masks/Anomaly/<n>.png
    <root>/split_csv/1cls.csv

``1cls.csv`` has the header ``object,split,label,image,mask``; ``split`` is
``train`` or ``test``, ``label`` is ``normal`` or ``anomaly``, ``image`` and
``mask`` are paths relative to ``<root>`` and ``mask`` is empty for normal
images. The CSV ships with the spot-diff repository; set ``split_csv`` in
the config when it is not under ``<root>``. The split gives no defect type
per image, so anomalous images get ``defect_type`` "anomaly".

Each category's manifest reads only that object's rows of the CSV (and
decodes only their images); the archive is downloaded (with ``download:
true``) once per dataset by ``download_dataset``, never by a manifest.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from diffad.data.download import ensure_downloaded, require_downloaded
from diffad.data.manifest import NORMAL_DEFECT, SPLITS, Sample
from diffad.data.options import root_of
from diffad.data.registry import Listing, register_dataset
from diffad.errors import ConfigError, DatasetError

VISA_URL = "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar"
VISA_SHA256 = "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362"
VISA_CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)
VISA_SPLIT_CSV_SOURCE = "https://github.com/amazon-science/spot-diff (split_csv/1cls.csv)"
ANOMALY_DEFECT = "anomaly"
_COLUMNS = ("object", "split", "label", "image", "mask")
_LABELS = {"normal": 0, "anomaly": 1}


def read_split_csv(path: str, root: str, categories: list[str]) -> list[Sample]:
    """Rows of the VisA split file ``path`` for ``categories``, paths joined onto ``root``;
    the other objects' rows are skipped without being checked.

    Raises:
        DatasetError: the file is missing or malformed, a listed category has
            no rows, or an anomalous image has no mask (each names the file).
    """
    if not os.path.isfile(path):
        raise DatasetError(
            f"VisA split file {path} not found; it ships with {VISA_SPLIT_CSV_SOURCE}: "
            f"put it there or point `split_csv` of the dataset entry at it"
        )
    wanted = set(categories)
    samples: list[Sample] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        if any(c not in header for c in _COLUMNS):
            raise DatasetError(f"VisA split file {path} has columns {header}; expected {_COLUMNS}")
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            obj = row["object"].strip()
            if obj not in wanted:
                continue
            split, label_name = row["split"].strip(), row["label"].strip()
            image, mask = row["image"].strip(), (row["mask"] or "").strip()
            if split not in SPLITS or label_name not in _LABELS:
                raise DatasetError(
                    f"{path} line {line}: split {split!r} / label {label_name!r} not one of "
                    f"{SPLITS} / {tuple(_LABELS)}"
                )
            label = _LABELS[label_name]
            if label and not mask:
                raise DatasetError(
                    f"{path} line {line}: anomalous image {os.path.join(root, image)} has no mask"
                )
            samples.append(
                Sample(
                    image_path=os.path.join(root, image),
                    category=obj,
                    split=split,
                    label=label,
                    defect_type=ANOMALY_DEFECT if label else NORMAL_DEFECT,
                    mask_path=os.path.join(root, mask) if label else None,
                )
            )
    found = {s.category for s in samples}
    for category in categories:
        if category not in found:
            raise DatasetError(f"category {category!r} has no rows in VisA split file {path}")
    return samples


_VISA_MANUAL = (
    f"download {VISA_URL} and extract it into the root "
    "(layout <root>/<object>/Data/{Images,Masks}/, <root>/split_csv/1cls.csv)."
)


def _download_visa(name: str, cfg: dict[str, Any], progress: bool) -> None:
    ensure_downloaded(name, cfg, root_of(name, cfg), url=VISA_URL, sha256=VISA_SHA256,
                      manual=_VISA_MANUAL, progress=progress)


@register_dataset("visa", categories=VISA_CATEGORIES, download=_download_visa)
def _build_visa(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    root = root_of(name, cfg)
    require_downloaded(name, cfg, root, url=VISA_URL, manual=_VISA_MANUAL)
    if not os.path.isdir(os.path.join(root, category)):
        raise DatasetError(
            f"category {category!r} not found: no folder {os.path.join(root, category)}"
        )
    split_csv = cfg.get("split_csv", os.path.join(root, "split_csv", "1cls.csv"))
    if not isinstance(split_csv, (str, os.PathLike)):
        raise ConfigError(f"datasets.{name}.split_csv must be a file path, got {split_csv!r}")
    split_csv = os.fspath(split_csv)
    return Listing(read_split_csv(split_csv, root, [category]), source=split_csv)
