"""Manifests of every dataset kind, the image loaders, and every bad-input error."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_mask, write_png
from PIL import Image

from diffad.data import (
    MANIFEST_COLUMNS,
    build_manifest,
    dataset_categories,
    dataset_kinds,
    generate_synthetic,
    load_image,
    load_mask,
    read_manifest,
    write_manifest,
)
from diffad.data.synthetic import DEFECT_TYPES, STAMP_NAME
from diffad.errors import ConfigError, DatasetError

SMALL = {"n_train": 3, "n_test_good": 2, "n_test_defect": 2, "seed": 0}
SORT_KEYS = ["category", "split", "defect_type", "image_path"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _folder_cfg(root: Path, **extra) -> dict:
    return {"kind": "folder", "root": str(root), **extra}


# ---------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def default_synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "images"
    start = time.perf_counter()
    df = build_manifest("synthetic", {"kind": "synthetic", "root": str(root)}, progress=False)
    return root, df, time.perf_counter() - start


def test_default_synthetic_is_fast_and_complete(default_synthetic):
    root, df, seconds = default_synthetic
    assert seconds < 20, f"default synthetic dataset took {seconds:.1f} s"
    assert sorted(df["category"].unique()) == ["tiles", "widget"]
    for category in ("tiles", "widget"):
        rows = df[df["category"] == category]
        assert (rows["split"] == "train").sum() == 40
        assert ((rows["split"] == "test") & (rows["label"] == 0)).sum() == 12
        assert sorted(rows.loc[rows["label"] == 1, "defect_type"].unique()) == sorted(DEFECT_TYPES)
        assert (rows["label"] == 1).sum() == 5 * len(DEFECT_TYPES)
        assert (root / category / "train" / "good" / "000.png").is_file()
        assert (root / category / "ground_truth" / "scratch" / "000_mask.png").is_file()
        assert json.loads((root / category / STAMP_NAME).read_text())["n_train"] == 40
    assert (df["width"] == 224).all() and (df["height"] == 224).all()


def test_synthetic_masks_are_the_painted_defects(default_synthetic):
    _, df, _ = default_synthetic
    anomalous = df[df["label"] == 1]
    assert anomalous["mask_path"].map(lambda p: isinstance(p, str)).all()
    assert df.loc[df["label"] == 0, "mask_path"].isna().all()
    for row in anomalous.itertuples():
        raw = np.asarray(Image.open(row.mask_path))
        assert set(np.unique(raw)) == {0, 255}, row.mask_path
        mask = load_mask(row.mask_path)
        assert mask.shape == (row.height, row.width)
        # visible but not enormous: roughly 0.5-6 % of the image
        assert 0.005 <= mask.mean() <= 0.06, (row.mask_path, mask.mean())
    # The mask is where the pixels differ from the defect-free scene: compare a
    # painted image with the normal image drawn from the same generator state.
    from diffad.data.synthetic import _paint_defect, _rng, _tiles

    rng = _rng(0, "tiles", "test/blob", 0)
    scene = _tiles(rng, 64)
    painted, mask = _paint_defect(rng, scene, "blob", 64)
    changed = np.abs(painted - scene.image).max(axis=-1) > 1e-6
    assert mask.any() and not (changed & ~mask).any()
    assert changed[mask].mean() > 0.95


def test_synthetic_is_deterministic_and_seeded(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_synthetic(a, image_size=64, **SMALL)
    generate_synthetic(b, image_size=64, **SMALL)
    generate_synthetic(c, image_size=64, **{**SMALL, "seed": 1})
    files_a = _files(a)
    assert len(files_a) == 2 * (3 + 2 + 2 * 2 * len(DEFECT_TYPES))
    assert files_a == _files(b)
    assert files_a.keys() == _files(c).keys() and files_a != _files(c)


def test_synthetic_regenerates_only_when_parameters_change(tmp_path):
    assert generate_synthetic(tmp_path, ["tiles"], image_size=48, **SMALL) == ["tiles"]
    probe = tmp_path / "tiles" / "train" / "good" / "000.png"
    before = probe.stat().st_mtime_ns
    assert generate_synthetic(tmp_path, ["tiles"], image_size=48, **SMALL) == []
    assert probe.stat().st_mtime_ns == before
    assert generate_synthetic(tmp_path, ["tiles"], image_size=48, **{**SMALL, "n_train": 4})
    assert len(list((tmp_path / "tiles" / "train" / "good").glob("*.png"))) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_synthetic_config_errors_name_the_key(tmp_path):
    cfg = {"kind": "synthetic", "root": str(tmp_path), "categories": ["tiles", "gears"]}
    with pytest.raises(ConfigError, match="gears"):
        build_manifest("synth", cfg, progress=False)
    cfg = {"kind": "synthetic", "root": str(tmp_path), "synthetic": {"n_trian": 3}}
    with pytest.raises(ConfigError, match=r"synth\.synthetic.*n_trian"):
        build_manifest("synth", cfg, progress=False)


# ---------------------------------------------------------------- manifest table


def test_manifest_columns_dtypes_order_and_round_trip(tmp_path, make_mvtec):
    make_mvtec(tmp_path / "ds", "zipper", defects={"cut": 2, "bent": 1})
    make_mvtec(tmp_path / "ds", "bottle", n_train=3, n_good=2)
    df = build_manifest("ds", _folder_cfg(tmp_path / "ds"), progress=False)
    assert tuple(df.columns) == MANIFEST_COLUMNS
    assert df["label"].dtype == np.int8
    assert df["width"].dtype == np.int32 and df["height"].dtype == np.int32
    assert all(isinstance(v, str) for c in ("image_path", "category", "split", "defect_type")
               for v in df[c])
    assert df.equals(df.sort_values(SORT_KEYS, ignore_index=True))
    assert list(df["category"].unique()) == ["bottle", "zipper"]
    assert df.loc[df["label"] == 0, "mask_path"].map(lambda v: v is None).all()
    path = tmp_path / "out" / "manifest.parquet"
    write_manifest(df, path)
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df)
    assert back.loc[back["label"] == 0, "mask_path"].map(lambda v: v is None).all()


def test_read_manifest_rejects_other_tables(tmp_path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"image_path": ["a.png"]}).to_parquet(path)
    with pytest.raises(DatasetError, match="other.parquet.*missing"):
        read_manifest(path)
    with pytest.raises(DatasetError, match="nothere.parquet"):
        read_manifest(tmp_path / "nothere.parquet")


# ---------------------------------------------------------------- folder kind


def test_folder_with_masks(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", "bottle", defects={"broken": 2, "crack": 1})
    df = build_manifest("ds", _folder_cfg(root, categories=["bottle"]), progress=False)
    assert len(df) == 2 + 1 + 3
    test = df[df["split"] == "test"]
    assert test.groupby("defect_type")["label"].max().to_dict() == {
        "broken": 1, "crack": 1, "good": 0}
    row = test[test["defect_type"] == "crack"].iloc[0]
    assert row["image_path"] == os.path.join(str(root), "bottle", "test", "crack", "000.png")
    assert row["mask_path"] == os.path.join(
        str(root), "bottle", "ground_truth", "crack", "000_mask.png")
    # width and height are the image's own (40 x 30), not swapped
    assert (df["width"] == 40).all() and (df["height"] == 30).all()


def test_folder_without_masks_is_image_level_only(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", "screws", masks=False)
    df = build_manifest("ds", _folder_cfg(root), progress=False)
    assert (df["label"] == 1).sum() == 2
    assert df["mask_path"].map(lambda v: v is None).all()


def test_folder_accepts_common_extensions_and_relative_root(tmp_path, make_mvtec, monkeypatch):
    root = make_mvtec(tmp_path / "ds", "bottle", defects={})
    write_png(root / "bottle" / "train" / "good" / "extra.JPG")
    write_png(root / "bottle" / "train" / "good" / "other.bmp")
    (root / "bottle" / "train" / "good" / "notes.txt").write_text("not an image")
    (root / "bottle" / "train" / "good" / "._extra.png").write_bytes(b"macOS resource fork")
    monkeypatch.chdir(tmp_path)
    df = build_manifest("ds", _folder_cfg(Path("ds")), progress=False)
    train = df[df["split"] == "train"]["image_path"].tolist()
    assert train == sorted(train) and len(train) == 4
    assert os.path.join("ds", "bottle", "train", "good", "extra.JPG") in train
    assert all(not os.path.isabs(p) for p in df["image_path"])


# ---------------------------------------------------------------- errors


def test_unknown_kind_names_kind_dataset_and_known_kinds():
    with pytest.raises(ConfigError) as err:
        build_manifest("my_data", {"kind": "mvtec_3d", "root": "x"}, progress=False)
    message = str(err.value)
    assert "mvtec_3d" in message and "my_data" in message
    assert all(kind in message for kind in dataset_kinds())
    assert {"synthetic", "folder", "mvtec_ad", "mpdd", "visa", "real_iad", "coco_ad"} <= set(
        dataset_kinds())


def test_dataset_categories_without_reading_images(tmp_path, make_mvtec):
    absent = str(tmp_path / "absent")
    assert dataset_categories("s", {"kind": "synthetic", "root": absent}) == ["tiles", "widget"]
    assert len(dataset_categories("m", {"kind": "mvtec_ad", "root": absent})) == 15
    assert len(dataset_categories("v", {"kind": "visa", "root": absent})) == 12
    assert dataset_categories("m", {"kind": "mpdd", "root": absent, "categories": ["tubes"]}) == [
        "tubes"]
    make_mvtec(tmp_path / "ds", "zipper")
    make_mvtec(tmp_path / "ds", "bottle")
    (tmp_path / "ds" / "not_a_category").mkdir()
    assert dataset_categories("f", _folder_cfg(tmp_path / "ds")) == ["bottle", "zipper"]
    with pytest.raises(DatasetError, match=absent):
        dataset_categories("f", {"kind": "folder", "root": absent})
    with pytest.raises(ConfigError, match="nope"):
        dataset_categories("f", {"kind": "nope", "root": absent})


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        ("folder", "MVTec layout"),
        ("mvtec_ad", "download: true"),
        ("visa", "download: true"),
        ("mpdd", "github.com/stepanje/MPDD"),
        ("real_iad", "realiad4ad"),
        ("coco_ad", "cocodataset.org"),
    ],
)
def test_missing_root_says_how_to_get_the_data(tmp_path, kind, hint):
    root = tmp_path / "absent"
    with pytest.raises(DatasetError) as err:
        build_manifest("ds", {"kind": kind, "root": str(root)}, progress=False)
    assert str(root) in str(err.value) and hint in str(err.value)
    assert not root.exists()


def test_truncated_image_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    bad = root / "bottle" / "test" / "broken" / "001.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=str(bad)):
        build_manifest("ds", _folder_cfg(root), progress=False)
    with pytest.raises(DatasetError, match=str(bad)):
        load_image(bad, 16)


def test_anomalous_image_without_mask_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    (root / "bottle" / "ground_truth" / "broken" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"test/broken/001\.png has no mask"):
        build_manifest("ds", _folder_cfg(root), progress=False)


def test_mvtec_ad_requires_masks(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "mvtec", "bottle", masks=False)
    cfg = {"kind": "mvtec_ad", "root": str(root), "categories": ["bottle"]}
    with pytest.raises(DatasetError, match=r"broken/000\.png has no mask"):
        build_manifest("mvtec", cfg, progress=False)


def test_mask_size_mismatch_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    mask = write_mask(root / "bottle" / "ground_truth" / "broken" / "000_mask.png", (20, 30))
    with pytest.raises(DatasetError, match=rf"{mask}.*20x30.*40x30"):
        build_manifest("ds", _folder_cfg(root), progress=False)


def test_empty_train_split_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", n_train=0)
    with pytest.raises(DatasetError, match=r"empty train split.*bottle/train/good"):
        build_manifest("ds", _folder_cfg(root), progress=False)


def test_category_without_test_images_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", n_good=0, defects={})
    with pytest.raises(DatasetError, match=r"no test images.*bottle/test"):
        build_manifest("ds", _folder_cfg(root), progress=False)


def test_missing_listed_category_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    with pytest.raises(DatasetError, match=rf"'cable'.*{root / 'cable'}"):
        build_manifest("ds", _folder_cfg(root, categories=["bottle", "cable"]), progress=False)


# ---------------------------------------------------------------- loaders


def test_load_image_is_rgb_float_resized(tmp_path):
    grey = write_png(tmp_path / "grey.png", (40, 30), value=128, mode="L")
    img = load_image(grey, 16)
    assert img.shape == (16, 16, 3) and img.dtype == np.float32
    assert np.allclose(img, 128 / 255, atol=1e-6)
    assert load_image(write_png(tmp_path / "rgb.png", (40, 30))).shape == (30, 40, 3)
    with pytest.raises(DatasetError, match="missing.png"):
        load_image(tmp_path / "missing.png", 16)


def test_load_mask_any_positive_value_nearest_resize(tmp_path):
    ones = write_mask(tmp_path / "visa_style.png", (40, 40), on=1)  # VisA stores 0/1
    mask = load_mask(ones, 20)
    assert mask.dtype == bool and mask.shape == (20, 20)
    assert mask.sum() == 5 * 5  # the 10x10 square at full size
    palette = Image.fromarray(np.array([[0, 2], [2, 0]], np.uint8)).convert("P")
    palette.putpalette([0, 0, 0] * 256)  # every colour black: indices must decide
    palette.save(tmp_path / "palette.png")
    assert load_mask(tmp_path / "palette.png").tolist() == [[False, True], [True, False]]


# ---------------------------------------------------------------- VisA


def _visa_tree(root: Path, with_csv: bool = True) -> Path:
    rows = ["object,split,label,image,mask"]
    for obj in ("candle", "pcb1"):
        base = root / obj / "Data"
        for i in range(3):
            write_png(base / "Images" / "Normal" / f"{i:04d}.JPG", (48, 32))
            split = "train" if i < 2 else "test"
            rows.append(f"{obj},{split},normal,{obj}/Data/Images/Normal/{i:04d}.JPG,")
        write_png(base / "Images" / "Anomaly" / "000.JPG", (48, 32))
        write_mask(base / "Masks" / "Anomaly" / "000.png", (48, 32), on=1)
        rows.append(f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/000.JPG,"
                    f"{obj}/Data/Masks/Anomaly/000.png")
    csv = root / "split_csv" / "1cls.csv"
    if with_csv:
        csv.parent.mkdir(parents=True)
        csv.write_text("\n".join(rows) + "\n")
    return csv


def test_visa_reads_the_1cls_split(tmp_path):
    root = tmp_path / "visa"
    _visa_tree(root)
    cfg = {"kind": "visa", "root": str(root), "categories": ["pcb1"]}
    df = build_manifest("visa", cfg, progress=False)
    assert set(df["category"]) == {"pcb1"}
    assert df.groupby("split").size().to_dict() == {"train": 2, "test": 2}
    anomaly = df[df["label"] == 1].iloc[0]
    assert anomaly["defect_type"] == "anomaly"
    assert anomaly["mask_path"] == os.path.join(str(root), "pcb1/Data/Masks/Anomaly/000.png")
    assert anomaly["image_path"] == os.path.join(str(root), "pcb1/Data/Images/Anomaly/000.JPG")
    assert load_mask(anomaly["mask_path"]).sum() > 0
    assert (df["width"] == 48).all()


def test_visa_split_csv_elsewhere_and_missing(tmp_path):
    root = tmp_path / "visa"
    csv = _visa_tree(root)
    moved = tmp_path / "spot-diff" / "1cls.csv"
    moved.parent.mkdir()
    csv.rename(moved)
    cfg = {"kind": "visa", "root": str(root), "categories": ["candle", "pcb1"]}
    with pytest.raises(DatasetError, match=rf"{csv}.*spot-diff.*split_csv"):
        build_manifest("visa", cfg, progress=False)
    df = build_manifest("visa", {**cfg, "split_csv": str(moved)}, progress=False)
    assert sorted(df["category"].unique()) == ["candle", "pcb1"] and len(df) == 8


def test_visa_anomaly_without_mask_is_named(tmp_path):
    root = tmp_path / "visa"
    csv = _visa_tree(root)
    csv.write_text(csv.read_text().replace(",pcb1/Data/Masks/Anomaly/000.png", ","))
    cfg = {"kind": "visa", "root": str(root), "categories": ["pcb1"]}
    with pytest.raises(DatasetError, match=r"1cls\.csv line \d+: anomalous image .*000\.JPG"):
        build_manifest("visa", cfg, progress=False)


# ---------------------------------------------------------------- Real-IAD and COCO-AD


def _real_iad_tree(root: Path) -> Path:
    cat = root / "realiad_256" / "audiojack"
    entries = {"train": [], "test": []}
    for i, split in enumerate(("train", "train", "test")):
        rel = f"OK/S{i:04d}/audiojack_{i:04d}_OK_C1_20230101.jpg"
        write_png(cat / rel, (32, 32))
        entries[split].append({"category": "audiojack", "anomaly_class": "OK",
                               "image_path": rel, "mask_path": None})
    rel = "NG/HS/S0009/audiojack_0009_NG_HS_C1_20230101.jpg"
    write_png(cat / rel, (32, 32))
    write_mask(cat / rel.replace(".jpg", "_mask.png"), (32, 32))
    entries["test"].append({"category": "audiojack", "anomaly_class": "HS", "image_path": rel,
                            "mask_path": rel.replace(".jpg", "_mask.png")})
    meta = {"meta": {"prefix": "audiojack", "normal_class": "OK"}, **entries}
    path = root / "realiad_jsons" / "realiad_jsons" / "audiojack.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(meta))
    return path


def test_real_iad_reads_the_json_split(tmp_path):
    root = tmp_path / "Real-IAD"
    _real_iad_tree(root)
    cfg = {"kind": "real_iad", "root": str(root), "categories": ["audiojack"]}
    df = build_manifest("realiad", cfg, progress=False)
    assert df.groupby("split").size().to_dict() == {"train": 2, "test": 2}
    ng = df[df["label"] == 1].iloc[0]
    assert ng["defect_type"] == "scratch"  # HS
    assert ng["image_path"] == os.path.join(
        str(root), "realiad_256", "audiojack", "NG/HS/S0009/audiojack_0009_NG_HS_C1_20230101.jpg")
    assert ng["mask_path"].endswith("_mask.png") and os.path.isfile(ng["mask_path"])
    assert df.loc[df["label"] == 0, "mask_path"].map(lambda v: v is None).all()


def test_real_iad_anomaly_without_mask_is_named(tmp_path):
    root = tmp_path / "Real-IAD"
    path = _real_iad_tree(root)
    meta = json.loads(path.read_text())
    meta["test"][-1]["mask_path"] = None
    path.write_text(json.dumps(meta))
    cfg = {"kind": "real_iad", "root": str(root), "categories": ["audiojack"]}
    with pytest.raises(DatasetError, match=r"audiojack\.json.*NG_HS_C1.*no mask_path"):
        build_manifest("realiad", cfg, progress=False)


def test_coco_ad_reads_the_meta_json(tmp_path):
    root = tmp_path / "coco"
    for name in ("train2017/000000000009.jpg", "train2017/000000000025.jpg",
                 "val2017/000000000139.jpg", "val2017/000000000724.jpg"):
        write_png(root / name, (36, 24))
    write_mask(root / "val2017_mask_ad_20_0" / "000000000724.png", (36, 24))

    def entry(path, anomaly, mask=""):
        return {"img_path": path, "mask_path": mask, "cls_name": "coco", "specie_name": "",
                "anomaly": anomaly}

    meta = {"train": {"coco": [entry("train2017/000000000009.jpg", 0),
                               entry("train2017/000000000025.jpg", 0)]},
            "test": {"coco": [entry("val2017/000000000139.jpg", 0),
                              entry("val2017/000000000724.jpg", 1,
                                    "val2017_mask_ad_20_0/000000000724.png")]}}
    (root / "meta_20_0.json").write_text(json.dumps(meta))
    df = build_manifest("coco", {"kind": "coco_ad", "root": str(root),
                                 "categories": ["split_0"]}, progress=False)
    assert set(df["category"]) == {"split_0"} and len(df) == 4
    assert df["label"].tolist() == [1, 0, 0, 0]  # sorted: test/anomaly, test/good, train
    assert df.iloc[0]["mask_path"] == os.path.join(str(root), "val2017_mask_ad_20_0",
                                                   "000000000724.png")
    with pytest.raises(DatasetError, match="meta_20_1.json"):
        build_manifest("coco", {"kind": "coco_ad", "root": str(root),
                                "categories": ["split_1"]}, progress=False)
