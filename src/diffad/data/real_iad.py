"""Real-IAD (``real_iad``, local only): splits read from the published JSON files.

Layout as distributed by the authors (access on request,
https://realiad4ad.github.io/Real-IAD/)::

    <root>/realiad_<res>/<category>/OK/S0001/<...>_OK_C1_<time>.jpg      res: 256, 512, 1024, raw
    <root>/realiad_<res>/<category>/NG/<code>/S0001/<...>.jpg  and  <...>_mask.png
    <root>/realiad_jsons/realiad_jsons/<category>.json   (also realiad_jsons_sv, _fuiad_*)

Each JSON holds ``meta`` (``prefix``, ``normal_class`` = "OK") and the
``train`` and ``test`` lists of ``{image_path, mask_path, anomaly_class}``
with paths relative to ``<image dir>/<prefix>`` (the prefix is the category).

Config keys: ``resolution`` (picks ``realiad_<resolution>``; default: the
first of 1024, 512, 256, raw found), ``image_dir`` and ``json_dir`` (paths
relative to ``root`` overriding both choices; ``json_dir`` defaults to
``realiad_jsons/realiad_jsons``, else ``realiad_jsons``). Anomaly codes
become readable defect types (AK -> pit, ...). Train entries keep the
label the JSON gives (the FUIAD splits put anomalies into train). Each
category's manifest reads only its own JSON and decodes only its images.
"""

from __future__ import annotations

import os
from typing import Any

from diffad.data.manifest import SPLITS, Sample, listed_sample, read_split_file
from diffad.data.options import require_root, root_of
from diffad.data.registry import Listing, register_dataset
from diffad.errors import DatasetError

REAL_IAD_CATEGORIES = (
    "audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood", "mint",
    "mounts", "pcb", "phone_battery", "plastic_nut", "plastic_plug", "porcelain_doll",
    "regulator", "rolled_strip_base", "sim_card_set", "switch", "tape", "terminalblock",
    "toothbrush", "toy", "toy_brick", "transistor1", "u_block", "usb", "usb_adaptor",
    "vcpill", "wooden_beads", "woodstick", "zipper",
)
# Defect codes of the Real-IAD paper (pinyin initials of the Chinese names).
DEFECT_NAMES = {
    "AK": "pit", "BX": "deformation", "CH": "abrasion", "HS": "scratch", "PS": "damage",
    "QS": "missing_parts", "YW": "foreign_objects", "ZW": "contamination",
}
_RESOLUTIONS = ("1024", "512", "256", "raw")
_LAYOUT = (
    "expected <root>/realiad_<res>/<category>/{OK,NG}/... and "
    "<root>/realiad_jsons/realiad_jsons/<category>.json"
)
_HOW_TO_GET = (
    "Real-IAD is not downloaded automatically: request access at "
    "https://realiad4ad.github.io/Real-IAD/ , then unpack realiad_<res> (256, 512, 1024 or raw) "
    f"and realiad_jsons into the root; {_LAYOUT}."
)


def _image_dir(name: str, cfg: dict[str, Any], root: str) -> str:
    if "image_dir" in cfg:
        path = os.path.join(root, os.fspath(cfg["image_dir"]))
    elif "resolution" in cfg:
        path = os.path.join(root, f"realiad_{cfg['resolution']}")
    else:
        found = [
            os.path.join(root, f"realiad_{r}")
            for r in _RESOLUTIONS
            if os.path.isdir(os.path.join(root, f"realiad_{r}"))
        ]
        if not found:
            raise DatasetError(f"no image folder realiad_<res> in {root}; {_LAYOUT}")
        path = found[0]
    if not os.path.isdir(path):
        raise DatasetError(f"Real-IAD image folder {path} not found; {_LAYOUT}")
    return path


def _json_dir(cfg: dict[str, Any], root: str) -> str:
    if "json_dir" in cfg:
        return os.path.join(root, os.fspath(cfg["json_dir"]))
    nested = os.path.join(root, "realiad_jsons", "realiad_jsons")
    return nested if os.path.isdir(nested) else os.path.join(root, "realiad_jsons")


def _defect_type(code: str) -> str:
    return DEFECT_NAMES.get(code, code.lower())


def read_split_json(path: str, image_dir: str, category: str) -> list[Sample]:
    """The images of one category listed in its Real-IAD JSON file ``path``.

    Raises:
        DatasetError: the file is missing or malformed, or an anomalous test
            image has no mask (the message names the JSON and the image).
    """
    data = read_split_file(path, f"Real-IAD split file for category {category!r}:")
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in SPLITS):
        raise DatasetError(f"Real-IAD split file {path} needs 'train' and 'test' lists")
    meta = data.get("meta") or {}
    normal_class = meta.get("normal_class") or "OK"
    prefix = meta.get("prefix") or category
    base = os.path.join(image_dir, prefix)
    samples = []
    for split in SPLITS:
        for i, entry in enumerate(data[split]):
            try:
                image, code = entry["image_path"], str(entry["anomaly_class"])
            except (TypeError, KeyError) as exc:
                raise DatasetError(
                    f"{path}: {split}[{i}] lacks image_path or anomaly_class"
                ) from exc
            label = int(code != normal_class)
            samples.append(listed_sample(
                path, base, image, entry.get("mask_path"), label, category, split,
                _defect_type(code), mask_key="mask_path",
            ))
    return samples


def _require_real_iad(name: str, cfg: dict[str, Any], progress: bool) -> None:
    root = root_of(name, cfg)
    require_root(root, _HOW_TO_GET)
    _image_dir(name, cfg, root)


@register_dataset("real_iad", categories=REAL_IAD_CATEGORIES, download=_require_real_iad)
def _build_real_iad(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    root = root_of(name, cfg)
    require_root(root, _HOW_TO_GET)
    image_dir = _image_dir(name, cfg, root)
    cat_dir = os.path.join(image_dir, category)
    if not os.path.isdir(cat_dir):
        raise DatasetError(f"category {category!r} not found: no folder {cat_dir}")
    path = os.path.join(_json_dir(cfg, root), f"{category}.json")
    return Listing(read_split_json(path, image_dir, category), source=path)
