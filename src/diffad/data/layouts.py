"""A few images in each dataset's own published layout at its real image sizes (rehearsals).

A rehearsal (:mod:`diffad.plan.rehearsal`) replaces each dataset of a
reproduction by :func:`write_layout`'s folder: the same tree, split file and
file formats as the real download (MVTec AD's and MPDD's folders with grey
images where MVTec AD has them, VisA's ``split_csv/1cls.csv``, Real-IAD's
JSON per category, COCO-AD's ``meta_20_<k>.json`` folds), at the real image
sizes, read by the same dataset code (:func:`~diffad.data.build_manifest`)
as a real run. The pixels are drawn scenes with painted defects and exact
masks (:mod:`diffad.data.synthetic`'s painters), so every later stage has
normal and anomalous images of the right shape to chew on.

:data:`PUBLISHED` holds each benchmark's size per category (train images,
test images, image width x height): what the rehearsal's cost estimate
multiplies by. MVTec AD and VisA are the counts of their papers' tables;
MPDD, Real-IAD and COCO-AD are approximate (see each entry's note); a real
run's manifests, where present, replace them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from diffad.data.synthetic import _paint_defect, _rng, _tiles, _widget


@dataclass(frozen=True)
class Size:
    """One category of a published benchmark."""

    n_train: int  #: normal train images
    n_test: int  #: test images, normal and anomalous
    width: int
    height: int
    grey: bool = False  #: stored as single-channel images (MVTec AD's grid, screw, zipper)


def _mvtec() -> dict[str, Size]:
    # Bergmann et al., MVTec AD (CVPR 2019), Table 1: train / test images and sizes.
    rows = {"bottle": (209, 83, 900), "cable": (224, 150, 1024), "capsule": (219, 132, 1000),
            "carpet": (280, 117, 1024), "grid": (264, 78, 1024), "hazelnut": (391, 110, 1024),
            "leather": (245, 124, 1024), "metal_nut": (220, 115, 700), "pill": (267, 167, 800),
            "screw": (320, 160, 1024), "tile": (230, 117, 840), "toothbrush": (60, 42, 1024),
            "transistor": (213, 100, 1024), "wood": (247, 79, 1024), "zipper": (240, 151, 1024)}
    grey = {"grid", "screw", "zipper"}
    return {c: Size(tr, te, s, s, c in grey) for c, (tr, te, s) in rows.items()}


def _visa() -> dict[str, Size]:
    # Zou et al., SPot-the-Difference (VisA, ECCV 2022), the 1cls split; the images are
    # about 1500 x 1000 (the exact size varies a little by category).
    rows = {"candle": (900, 200), "capsules": (542, 160), "cashew": (450, 150),
            "chewinggum": (453, 150), "fryum": (450, 150), "macaroni1": (900, 200),
            "macaroni2": (900, 200), "pcb1": (904, 200), "pcb2": (901, 200), "pcb3": (905, 201),
            "pcb4": (904, 201), "pipe_fryum": (450, 150)}
    return {c: Size(tr, te, 1500, 1000) for c, (tr, te) in rows.items()}


def _mpdd() -> dict[str, Size]:
    # Jezek et al., MPDD (2021): 888 train and 458 test images in six categories of
    # 1024 x 1024; the per-category split is not recorded here, so evenly (approximate).
    names = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate",
             "tubes")
    return {c: Size(888 // 6, 458 // 6, 1024, 1024) for c in names}


def _real_iad() -> dict[str, Size]:
    # Wang et al., Real-IAD (CVPR 2024): 30 categories, about 150,000 images of
    # 2000-5000 px (five views per sample); the authors' code trains on the released
    # realiad_256 / realiad_1024 resizes. Approximate per category: about 1,200 normal
    # train and 3,800 test images (the single-view split used by ADer), at 1024 px.
    from diffad.data.real_iad import REAL_IAD_CATEGORIES

    return {c: Size(1200, 3800, 1024, 1024) for c in REAL_IAD_CATEGORIES}


def _coco_ad() -> dict[str, Size]:
    # Zhang et al., COCO-AD (InvAD): each fold's normal train images are the COCO 2017
    # train images without its 20 classes, the test split is val2017 (5,000). About
    # 65,000 train images per fold (approximate), COCO's about 640 x 480.
    from diffad.data.coco_ad import COCO_AD_CATEGORIES

    return {c: Size(65000, 5000, 640, 480) for c in COCO_AD_CATEGORIES}


#: Published size per dataset kind and category (see the module docstring for sources).
PUBLISHED: dict[str, dict[str, Size]] = {
    "mvtec_ad": _mvtec(), "visa": _visa(), "mpdd": _mpdd(), "real_iad": _real_iad(),
    "coco_ad": _coco_ad(),
}


def published_size(kind: str, category: str) -> Size | None:
    """The published size of a category of a benchmark kind; None where none is recorded
    (``folder``, ``synthetic``)."""
    return PUBLISHED.get(kind, {}).get(category)


# ----------------------------------------------------------------------- drawing


def _draw(kind_seed: str, category: str, index: int, size: Size,
          defect: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A (H, W, 3) float image in [0, 1] and its mask (None for a normal image): a drawn
    scene at the category's size, a defect painted where asked."""
    side = max(size.width, size.height)
    rng = _rng(0, f"{kind_seed}/{category}", defect or "good", index)
    scene = (_widget if index % 2 else _tiles)(rng, side)
    image, mask = (scene.image, None) if defect is None else _paint_defect(
        rng, scene, defect, side)
    image = image[:size.height, :size.width]
    if mask is not None:
        mask = mask[:size.height, :size.width]
        if not mask.any():  # the crop cut the defect away: keep one pixel, a valid mask
            mask = mask.copy()
            mask[size.height // 2, size.width // 2] = True
    return image, mask


def _save(image: np.ndarray, path: Path, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(data)
    if grey:
        picture = picture.convert("L")
    suffix = path.suffix.lower()
    picture.save(path, **({"quality": 95} if suffix in (".jpg", ".jpeg") else
                          {"compress_level": 1}))


def _save_mask(mask: np.ndarray, path: Path, on: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * on).save(path)


def _split(n_train: int, n_test: int) -> tuple[int, int, int]:
    """(train, normal test, anomalous test): the test images half normal, half not."""
    good = max(1, n_test // 2)
    return n_train, good, max(1, n_test - good)


# ----------------------------------------------------------------------- layouts


def _mvtec_layout(root: Path, kind: str, category: str, size: Size, counts) -> None:
    n_train, n_good, n_bad = counts
    folder = root / category
    for i in range(n_train):
        _save(_draw(kind, category, i, size, None)[0], folder / "train/good" / f"{i:03d}.png",
              size.grey)
    for i in range(n_good):
        _save(_draw(kind, category, 1000 + i, size, None)[0],
              folder / "test/good" / f"{i:03d}.png", size.grey)
    for i in range(n_bad):
        image, mask = _draw(kind, category, 2000 + i, size, "scratch")
        _save(image, folder / "test/scratch" / f"{i:03d}.png", size.grey)
        _save_mask(mask, folder / "ground_truth/scratch" / f"{i:03d}_mask.png")


def _visa_layout(root: Path, categories: list[str], sizes: dict[str, Size], counts) -> None:
    n_train, n_good, n_bad = counts
    rows = ["object,split,label,image,mask"]
    for category in categories:
        size, base = sizes[category], root / category / "Data"
        for i in range(n_train + n_good):
            rel = f"{category}/Data/Images/Normal/{i:04d}.JPG"
            _save(_draw("visa", category, i, size, None)[0], root / rel)
            rows.append(f"{category},{'train' if i < n_train else 'test'},normal,{rel},")
        for i in range(n_bad):
            image, mask = _draw("visa", category, 2000 + i, size, "blob")
            _save(image, base / "Images/Anomaly" / f"{i:03d}.JPG")
            _save_mask(mask, base / "Masks/Anomaly" / f"{i:03d}.png", on=1)  # VisA's 0/1
            rows.append(f"{category},test,anomaly,{category}/Data/Images/Anomaly/{i:03d}.JPG,"
                        f"{category}/Data/Masks/Anomaly/{i:03d}.png")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")


def _real_iad_layout(root: Path, category: str, size: Size, counts) -> None:
    n_train, n_good, n_bad = counts
    folder = root / f"realiad_{size.width}" / category
    entries: dict[str, list] = {"train": [], "test": []}
    for i in range(n_train + n_good):
        rel = f"OK/S{i:04d}/{category}_{i:04d}_OK_C1_20230101.jpg"
        _save(_draw("real_iad", category, i, size, None)[0], folder / rel)
        entries["train" if i < n_train else "test"].append(
            {"category": category, "anomaly_class": "OK", "image_path": rel, "mask_path": None})
    for i in range(n_bad):
        rel = f"NG/HS/S{500 + i:04d}/{category}_{500 + i:04d}_NG_HS_C1_20230101.jpg"
        image, mask = _draw("real_iad", category, 2000 + i, size, "scratch")
        _save(image, folder / rel)
        _save_mask(mask, folder / rel.replace(".jpg", "_mask.png"))
        entries["test"].append({"category": category, "anomaly_class": "HS", "image_path": rel,
                                "mask_path": rel.replace(".jpg", "_mask.png")})
    meta = {"meta": {"prefix": category, "normal_class": "OK"}, **entries}
    path = root / "realiad_jsons" / "realiad_jsons" / f"{category}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta))


def _coco_ad_layout(root: Path, category: str, size: Size, counts) -> None:
    n_train, n_good, n_bad = counts
    fold = category.split("_")[1]

    def entry(path: str, anomaly: int, mask: str = "") -> dict:
        return {"img_path": path, "mask_path": mask, "cls_name": "coco", "specie_name": "",
                "anomaly": anomaly}

    train, test = [], []
    for i in range(n_train):
        rel = f"train2017/{int(fold) * 100000 + i:012d}.jpg"
        _save(_draw("coco_ad", category, i, size, None)[0], root / rel)
        train.append(entry(rel, 0))
    for i in range(n_good + n_bad):
        rel = f"val2017/{int(fold) * 100000 + i:012d}.jpg"
        bad = i >= n_good
        image, mask = _draw("coco_ad", category, 1000 + i, size, "blob" if bad else None)
        _save(image, root / rel)
        if bad:
            mask_rel = f"val2017_mask_ad_20_{fold}/{int(fold) * 100000 + i:012d}.png"
            _save_mask(mask, root / mask_rel)
            test.append(entry(rel, 1, mask_rel))
        else:
            test.append(entry(rel, 0))
    meta = {"train": {"coco": train}, "test": {"coco": test}}
    (root / f"meta_20_{fold}.json").write_text(json.dumps(meta))


def write_layout(kind: str, root: str | os.PathLike, categories: list[str], n_train: int,
                 n_test: int) -> None:
    """Write ``categories`` of benchmark ``kind`` under ``root`` in its published layout at
    its published image sizes: ``n_train`` normal train images and ``n_test`` test images
    (half normal, half anomalous with masks) per category.

    Raises:
        ValueError: a kind without a published layout recorded here.
    """
    if kind not in PUBLISHED:
        raise ValueError(f"no published layout of dataset kind {kind!r} to rehearse; "
                         f"known: {sorted(PUBLISHED)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    counts = _split(n_train, n_test)
    sizes = PUBLISHED[kind]
    if kind == "visa":
        _visa_layout(root, categories, sizes, counts)
        return
    for category in categories:
        if kind in ("mvtec_ad", "mpdd"):
            _mvtec_layout(root, kind, category, sizes[category], counts)
        elif kind == "real_iad":
            _real_iad_layout(root, category, sizes[category], counts)
        else:
            _coco_ad_layout(root, category, sizes[category], counts)


__all__ = ["PUBLISHED", "Size", "published_size", "write_layout"]
