"""Per-category manifests of every dataset kind, their fingerprints, and every bad-input error."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_mask, write_png
from PIL import Image

import diffad.data.manifest as manifest_module
from diffad.data import (
    CATEGORY_PATTERN,
    MANIFEST_COLUMNS,
    build_manifest,
    check_unchanged,
    dataset_categories,
    dataset_kinds,
    download_dataset,
    generate_synthetic,
    load_image,
    load_mask,
    read_manifest,
    read_manifests,
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


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """Every path the manifest decodes, in order."""
    seen: list[str] = []
    real = manifest_module.image_size

    def record(path):
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(manifest_module, "image_size", record)
    return seen


# ---------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def default_synthetic(synthetic_root):
    """The test run's synthetic dataset (conftest.py) and its manifests, read back."""
    cfg = {"kind": "synthetic", "root": str(synthetic_root)}
    frames = [build_manifest("synthetic", cfg, c, progress=False)
              for c in dataset_categories("synthetic", cfg)]
    return synthetic_root, pd.concat(frames, ignore_index=True)


def test_default_synthetic_is_complete(default_synthetic):
    root, df = default_synthetic
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
    _, df = default_synthetic
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


def test_synthetic_manifest_generates_only_its_category(tmp_path):
    cfg = {"kind": "synthetic", "root": str(tmp_path / "one"), "image_size": 48,
           "synthetic": SMALL}
    df = build_manifest("synth", cfg, "widget", progress=False)
    assert set(df["category"]) == {"widget"}
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["widget"]
    # the same pixels as when every category is generated at once
    generate_synthetic(tmp_path / "all", image_size=48, **SMALL)
    assert _files(tmp_path / "one" / "widget") == _files(tmp_path / "all" / "widget")


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
        dataset_categories("synth", cfg)
    with pytest.raises(ConfigError, match="gears"):
        build_manifest("synth", cfg, "gears", progress=False)
    cfg = {"kind": "synthetic", "root": str(tmp_path), "synthetic": {"n_trian": 3}}
    with pytest.raises(ConfigError, match=r"synth\.synthetic.*n_trian"):
        build_manifest("synth", cfg, "tiles", progress=False)


def test_download_dataset_leaves_synthetic_to_the_manifests(tmp_path):
    root = tmp_path / "images"
    download_dataset("synth", {"kind": "synthetic", "root": str(root)}, progress=False)
    assert not root.exists()


# ---------------------------------------------------------------- manifest table


def test_manifest_columns_dtypes_order_and_round_trip(tmp_path, make_mvtec):
    make_mvtec(tmp_path / "ds", "zipper", defects={"cut": 2, "bent": 1})
    make_mvtec(tmp_path / "ds", "bottle", n_train=3, n_good=2)
    cfg = _folder_cfg(tmp_path / "ds")
    df = build_manifest("ds", cfg, "zipper", progress=False)
    assert tuple(df.columns) == MANIFEST_COLUMNS
    assert df["label"].dtype == np.int8
    assert df["width"].dtype == np.int32 and df["height"].dtype == np.int32
    assert df["size"].dtype == np.int64 and df["mtime_ns"].dtype == np.int64
    assert all(isinstance(v, str) for c in ("image_path", "category", "split", "defect_type")
               for v in df[c])
    assert df.equals(df.sort_values(SORT_KEYS, ignore_index=True))
    assert set(df["category"]) == {"zipper"}
    assert df.loc[df["label"] == 0, "mask_path"].map(lambda v: v is None).all()
    for row in df.itertuples():
        st = os.stat(row.image_path)
        assert (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
    path = tmp_path / "out" / "zipper.parquet"
    write_manifest(df, path)
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df)
    assert back.loc[back["label"] == 0, "mask_path"].map(lambda v: v is None).all()


def test_read_manifests_is_the_dataset_view_in_a_stable_order(tmp_path, make_mvtec):
    make_mvtec(tmp_path / "ds", "zipper", defects={"cut": 2, "bent": 1})
    make_mvtec(tmp_path / "ds", "bottle", n_train=3, n_good=2)
    cfg = _folder_cfg(tmp_path / "ds")
    paths = {}
    for category in dataset_categories("ds", cfg):
        paths[category] = tmp_path / "out" / f"{category}.parquet"
        write_manifest(build_manifest("ds", cfg, category, progress=False), paths[category])
    view = read_manifests([paths["zipper"], paths["bottle"]])
    assert view.equals(read_manifests([paths["bottle"], paths["zipper"]]))
    assert list(view["category"].unique()) == ["bottle", "zipper"]
    assert view.equals(view.sort_values(SORT_KEYS, ignore_index=True))
    assert tuple(view.columns) == MANIFEST_COLUMNS and len(view) == (3 + 2 + 2) + (2 + 1 + 3)
    with pytest.raises(DatasetError, match=r"'bottle'.*two manifests"):
        read_manifests([paths["bottle"], paths["zipper"], paths["bottle"]])
    with pytest.raises(DatasetError, match="no manifest"):
        read_manifests([])


def test_read_manifest_rejects_other_tables(tmp_path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"image_path": ["a.png"]}).to_parquet(path)
    with pytest.raises(DatasetError, match="other.parquet.*missing"):
        read_manifest(path)
    missing = tmp_path / "nothere.parquet"
    with pytest.raises(DatasetError, match=f"snakemake {missing}"):
        read_manifest(missing)


def test_manifest_without_fingerprint_columns_is_refused(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    old = build_manifest("ds", _folder_cfg(root), "bottle", progress=False)
    path = tmp_path / "old.parquet"
    old.drop(columns=["size", "mtime_ns"]).to_parquet(path)
    with pytest.raises(DatasetError, match=r"old\.parquet.*missing \['size', 'mtime_ns'\]"):
        read_manifest(path)


# ---------------------------------------------------------------- fingerprints


@pytest.fixture
def built(tmp_path, make_mvtec):
    """A written bottle manifest: (rows read back, its path)."""
    root = make_mvtec(tmp_path / "ds", "bottle", n_train=8)
    path = str(tmp_path / "results" / "data" / "ds" / "bottle.parquet")
    write_manifest(build_manifest("ds", _folder_cfg(root), "bottle", progress=False), path)
    return read_manifest(path), path


def test_check_unchanged_passes_on_untouched_images(built):
    rows, path = built
    check_unchanged(rows, path)
    check_unchanged(rows[rows["split"] == "train"], path)
    check_unchanged(rows.iloc[:0], path)


def test_check_unchanged_detects_a_truncated_image(built):
    rows, path = built
    image = Path(rows[rows["split"] == "train"].iloc[0]["image_path"])
    old_size = image.stat().st_size
    _truncate(image)
    with pytest.raises(DatasetError) as err:
        check_unchanged(rows, path)
    message = str(err.value)
    assert str(image) in message
    assert f"size {old_size} -> {old_size // 2} bytes" in message
    assert message.endswith(f"snakemake --forcerun {path}")


def test_check_unchanged_detects_a_replaced_image_of_the_same_size(built):
    rows, path = built
    image = Path(rows.iloc[-1]["image_path"])
    before = image.stat()
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF
    image.write_bytes(bytes(data))
    # On a coarse-clock file system the rewrite may keep the old mtime: make the
    # new one certain (a real replacement is rarely within the same tick).
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DatasetError) as err:
        check_unchanged(rows, path)
    message = str(err.value)
    assert str(image) in message and "mtime_ns" in message
    assert f"size {before.st_size} -> {before.st_size} bytes" in message
    assert f"snakemake --forcerun {path}" in message


def test_check_unchanged_detects_deleted_images_and_names_the_first(built):
    rows, path = built
    train = rows[rows["split"] == "train"]["image_path"].tolist()
    for image in train:
        os.remove(image)
    with pytest.raises(DatasetError) as err:
        check_unchanged(rows, path)
    message = str(err.value)
    assert message.startswith(f"{len(train)} image(s) changed since {path}")
    assert train[0] in message and train[-1] not in message
    assert f"and {len(train) - 5} more" in message


def test_check_unchanged_on_the_dataset_view_names_each_manifest(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", "bottle")
    make_mvtec(root, "zipper")
    paths = {}
    for category in ("bottle", "zipper"):
        paths[category] = str(tmp_path / f"{category}.parquet")
        write_manifest(build_manifest("ds", _folder_cfg(root), category, progress=False),
                       paths[category])
    view = read_manifests(paths.values())
    check_unchanged(view, paths)
    _truncate(root / "zipper" / "train" / "good" / "000.png")
    with pytest.raises(DatasetError, match=rf"snakemake --forcerun {paths['zipper']}$"):
        check_unchanged(view, paths)


# ---------------------------------------------------------------- one category at a time


def test_broken_category_does_not_stop_another(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", "catA")
    make_mvtec(root, "catB")
    bad = _truncate(root / "catB" / "test" / "broken" / "001.png")
    cfg = _folder_cfg(root)
    assert dataset_categories("ds", cfg) == ["catA", "catB"]
    df = build_manifest("ds", cfg, "catA", progress=False)
    assert set(df["category"]) == {"catA"} and len(df) == 5
    with pytest.raises(DatasetError, match=str(bad)):
        build_manifest("ds", cfg, "catB", progress=False)


def test_adding_a_category_leaves_the_others_manifests_alone(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", "bottle")
    before = build_manifest("ds", _folder_cfg(root), "bottle", progress=False)
    make_mvtec(root, "cable")
    assert dataset_categories("ds", _folder_cfg(root)) == ["bottle", "cable"]
    pd.testing.assert_frame_equal(
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False), before)


def _break_mvtec(root: Path, category: str) -> None:
    """A category whose images are garbage and whose masks are missing."""
    for png in (root / category).rglob("*.png"):
        png.write_bytes(b"not a png")
    for mask in (root / category / "ground_truth").rglob("*_mask.png"):
        mask.unlink()


def _mvtec_like(kind: str, category: str, other: str):
    def make(tmp_path: Path, make_mvtec) -> tuple[dict, str]:
        root = make_mvtec(tmp_path / kind, category)
        make_mvtec(root, other)
        _break_mvtec(root, other)
        return {"kind": kind, "root": str(root)}, str(root / category)

    return make


def _visa_one_broken(tmp_path: Path, make_mvtec) -> tuple[dict, str]:
    root = tmp_path / "visa"
    csv = _visa_tree(root)
    for image in (root / "candle").rglob("*.*"):
        image.write_bytes(b"garbage")
    csv.write_text(csv.read_text() + "candle,validation,weird,candle/x.JPG,\n")
    return {"kind": "visa", "root": str(root)}, str(root / "pcb1")


def _real_iad_one_broken(tmp_path: Path, make_mvtec) -> tuple[dict, str]:
    root = tmp_path / "Real-IAD"
    path = _real_iad_tree(root)
    (root / "realiad_256" / "bottle_cap").mkdir()
    (path.parent / "bottle_cap.json").write_text("{ not json")
    return ({"kind": "real_iad", "root": str(root)},
            str(root / "realiad_256" / "audiojack"))


def _coco_ad_one_broken(tmp_path: Path, make_mvtec) -> tuple[dict, str]:
    root = _coco_tree(tmp_path / "coco")
    (root / "meta_20_1.json").write_text("{ not json")
    return {"kind": "coco_ad", "root": str(root)}, str(root)


@pytest.mark.parametrize(
    ("category", "make"),
    [
        ("bottle", _mvtec_like("folder", "bottle", "cable")),
        ("bottle", _mvtec_like("mvtec_ad", "bottle", "cable")),
        ("tubes", _mvtec_like("mpdd", "tubes", "connector")),
        ("pcb1", _visa_one_broken),
        ("audiojack", _real_iad_one_broken),
        ("split_0", _coco_ad_one_broken),
    ],
    ids=["folder", "mvtec_ad", "mpdd", "visa", "real_iad", "coco_ad"],
)
def test_each_kind_builds_one_category_from_its_files_only(
    tmp_path, make_mvtec, decoded, category, make
):
    cfg, own = make(tmp_path, make_mvtec)
    df = build_manifest("ds", cfg, category, progress=False)
    assert set(df["category"]) == {category}
    assert set(df["split"]) == {"train", "test"} and set(df["label"]) == {0, 1}
    assert decoded and all(p.startswith(own + os.sep) for p in decoded), decoded
    assert set(decoded) == set(df["image_path"]) | set(df["mask_path"].dropna())


# ---------------------------------------------------------------- folder kind


def test_folder_with_masks(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", "bottle", defects={"broken": 2, "crack": 1})
    df = build_manifest("ds", _folder_cfg(root, categories=["bottle"]), "bottle", progress=False)
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
    df = build_manifest("ds", _folder_cfg(root), "screws", progress=False)
    assert (df["label"] == 1).sum() == 2
    assert df["mask_path"].map(lambda v: v is None).all()


def test_folder_accepts_common_extensions_and_relative_root(tmp_path, make_mvtec, monkeypatch):
    root = make_mvtec(tmp_path / "ds", "bottle")
    write_png(root / "bottle" / "train" / "good" / "extra.JPG")
    write_png(root / "bottle" / "train" / "good" / "other.bmp")
    (root / "bottle" / "train" / "good" / "notes.txt").write_text("not an image")
    (root / "bottle" / "train" / "good" / "._extra.png").write_bytes(b"macOS resource fork")
    monkeypatch.chdir(tmp_path)
    df = build_manifest("ds", _folder_cfg(Path("ds")), "bottle", progress=False)
    train = df[df["split"] == "train"]["image_path"].tolist()
    assert train == sorted(train) and len(train) == 4
    assert os.path.join("ds", "bottle", "train", "good", "extra.JPG") in train
    assert all(not os.path.isabs(p) for p in df["image_path"])


# ---------------------------------------------------------------- category names


def test_dataset_categories_without_reading_images(tmp_path, make_mvtec, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("dataset_categories decoded an image")

    monkeypatch.setattr(Image, "open", no_decoding)
    absent = str(tmp_path / "absent")
    assert dataset_categories("s", {"kind": "synthetic", "root": absent}) == ["tiles", "widget"]
    assert len(dataset_categories("m", {"kind": "mvtec_ad", "root": absent})) == 15
    assert len(dataset_categories("v", {"kind": "visa", "root": absent})) == 12
    assert dataset_categories("m", {"kind": "mpdd", "root": absent, "categories": ["tubes"]}) == [
        "tubes"]
    monkeypatch.undo()
    make_mvtec(tmp_path / "ds", "zipper")
    make_mvtec(tmp_path / "ds", "bottle")
    (tmp_path / "ds" / "not_a_category").mkdir()
    (tmp_path / "ds" / "not a category either").mkdir()  # no train/test: not a category
    monkeypatch.setattr(Image, "open", no_decoding)
    assert dataset_categories("f", _folder_cfg(tmp_path / "ds")) == ["bottle", "zipper"]
    with pytest.raises(DatasetError, match=absent):
        dataset_categories("f", {"kind": "folder", "root": absent})
    with pytest.raises(ConfigError, match="nope"):
        dataset_categories("f", {"kind": "nope", "root": absent})


def test_bad_category_folder_name_names_the_folder_and_the_allowed_characters(
    tmp_path, make_mvtec
):
    root = make_mvtec(tmp_path / "ds", "catA")
    make_mvtec(root, "cat B")
    with pytest.raises(DatasetError) as err:
        dataset_categories("ds", _folder_cfg(root))
    message = str(err.value)
    assert str(root / "cat B") in message and CATEGORY_PATTERN in message


@pytest.mark.parametrize("bad", ["cat B", "a/b", "all", "..", "é"])
def test_bad_configured_category_name_is_a_config_error(tmp_path, bad):
    cfg = {"kind": "folder", "root": str(tmp_path), "categories": [bad]}
    with pytest.raises(ConfigError) as err:
        dataset_categories("ds", cfg)
    assert f"datasets.ds.categories: {bad!r}" in str(err.value)
    assert CATEGORY_PATTERN in str(err.value)
    with pytest.raises(ConfigError, match=re.escape(CATEGORY_PATTERN)):
        build_manifest("ds", {"kind": "folder", "root": str(tmp_path)}, bad, progress=False)


def test_categories_the_dataset_does_not_have(tmp_path, make_mvtec):
    absent = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"datasets\.m: mvtec_ad has no category 'botle'.*"
                                          r"bottle, cable"):
        dataset_categories("m", {"kind": "mvtec_ad", "root": absent,
                                 "categories": ["bottle", "botle"]})
    with pytest.raises(ConfigError, match="'pcb9'"):
        dataset_categories("v", {"kind": "visa", "root": absent, "categories": ["pcb9"]})
    with pytest.raises(ConfigError, match="'fold_1' is not split_<k>"):
        dataset_categories("c", {"kind": "coco_ad", "root": absent, "categories": ["fold_1"]})
    assert dataset_categories("c", {"kind": "coco_ad", "root": absent,
                                    "categories": ["split_7"]}) == ["split_7"]
    root = make_mvtec(tmp_path / "ds")
    with pytest.raises(DatasetError, match=rf"'cable'.*{root / 'cable'}"):
        dataset_categories("ds", _folder_cfg(root, categories=["bottle", "cable"]))
    # a category the config does not list is not built either
    with pytest.raises(ConfigError, match=r"'bottle' is not among its listed categories"):
        build_manifest("ds", _folder_cfg(root, categories=["zipper"]), "bottle", progress=False)


# ---------------------------------------------------------------- errors


def test_unknown_kind_names_kind_dataset_and_known_kinds():
    with pytest.raises(ConfigError) as err:
        build_manifest("my_data", {"kind": "mvtec_3d", "root": "x"}, "bottle", progress=False)
    message = str(err.value)
    assert "mvtec_3d" in message and "my_data" in message
    assert all(kind in message for kind in dataset_kinds())
    assert {"synthetic", "folder", "mvtec_ad", "mpdd", "visa", "real_iad", "coco_ad"} <= set(
        dataset_kinds())


@pytest.mark.parametrize(
    ("kind", "category", "hint"),
    [
        ("folder", "bottle", "MVTec layout"),
        ("mvtec_ad", "bottle", "download: true"),
        ("visa", "candle", "download: true"),
        ("mpdd", "tubes", "github.com/stepanje/MPDD"),
        ("real_iad", "audiojack", "realiad4ad"),
        ("coco_ad", "split_0", "cocodataset.org"),
    ],
)
def test_missing_root_says_how_to_get_the_data(tmp_path, kind, category, hint):
    root = tmp_path / "absent"
    cfg = {"kind": kind, "root": str(root)}
    with pytest.raises(DatasetError) as err:
        build_manifest("ds", cfg, category, progress=False)
    assert str(root) in str(err.value) and hint in str(err.value)
    with pytest.raises(DatasetError) as err:
        download_dataset("ds", cfg, progress=False)
    assert str(root) in str(err.value) and hint in str(err.value)
    assert not root.exists()


def test_truncated_image_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    bad = _truncate(root / "bottle" / "test" / "broken" / "001.png")
    with pytest.raises(DatasetError, match=str(bad)):
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False)
    with pytest.raises(DatasetError, match=str(bad)):
        load_image(bad, 16)


def test_anomalous_image_without_mask_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    (root / "bottle" / "ground_truth" / "broken" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"test/broken/001\.png has no mask"):
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False)


def test_mvtec_ad_requires_masks(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "mvtec", "bottle", masks=False)
    cfg = {"kind": "mvtec_ad", "root": str(root), "categories": ["bottle"]}
    with pytest.raises(DatasetError, match=r"broken/000\.png has no mask"):
        build_manifest("mvtec", cfg, "bottle", progress=False)


def test_mask_size_mismatch_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    mask = write_mask(root / "bottle" / "ground_truth" / "broken" / "000_mask.png", (20, 30))
    with pytest.raises(DatasetError, match=rf"{mask}.*20x30.*40x30"):
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False)


def test_empty_train_split_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", n_train=0)
    with pytest.raises(DatasetError, match=r"empty train split.*bottle/train/good"):
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False)


def test_category_without_test_images_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds", n_good=0, defects={})
    with pytest.raises(DatasetError, match=r"no test images.*bottle/test"):
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False)


@pytest.mark.parametrize(("layout", "missing"), [
    ({"defects": {}}, "anomalous"),
    ({"n_good": 0}, "normal"),
])
def test_test_split_needs_normal_and_anomalous_images(tmp_path, make_mvtec, layout, missing):
    root = make_mvtec(tmp_path / "ds", "bottle", **layout)
    make_mvtec(root, "zipper")
    with pytest.raises(DatasetError) as err:
        build_manifest("ds", _folder_cfg(root), "bottle", progress=False)
    message = str(err.value)
    assert f"category 'bottle' has no {missing} test images in {root / 'bottle' / 'test'}" in (
        message)
    assert len(build_manifest("ds", _folder_cfg(root), "zipper", progress=False)) == 5


def test_test_split_check_names_the_split_file(tmp_path):
    root = tmp_path / "visa"
    csv = _visa_tree(root)
    lines = [line for line in csv.read_text().splitlines() if ",anomaly," not in line
             or not line.startswith("pcb1")]
    csv.write_text("\n".join(lines) + "\n")
    cfg = {"kind": "visa", "root": str(root)}
    with pytest.raises(DatasetError, match=rf"'pcb1' has no anomalous test images in {csv}"):
        build_manifest("visa", cfg, "pcb1", progress=False)
    assert len(build_manifest("visa", cfg, "candle", progress=False)) == 4


def test_missing_listed_category_is_named(tmp_path, make_mvtec):
    root = make_mvtec(tmp_path / "ds")
    cfg = _folder_cfg(root, categories=["bottle", "cable"])
    with pytest.raises(DatasetError, match=rf"'cable'.*{root / 'cable'}"):
        build_manifest("ds", cfg, "cable", progress=False)
    assert len(build_manifest("ds", cfg, "bottle", progress=False)) == 5


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
    df = build_manifest("visa", cfg, "pcb1", progress=False)
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
        build_manifest("visa", cfg, "candle", progress=False)
    cfg = {**cfg, "split_csv": str(moved)}
    frames = [build_manifest("visa", cfg, c, progress=False) for c in ("candle", "pcb1")]
    assert [set(df["category"]) for df in frames] == [{"candle"}, {"pcb1"}]
    assert sum(map(len, frames)) == 8


def test_visa_anomaly_without_mask_is_named(tmp_path):
    root = tmp_path / "visa"
    csv = _visa_tree(root)
    csv.write_text(csv.read_text().replace(",pcb1/Data/Masks/Anomaly/000.png", ","))
    cfg = {"kind": "visa", "root": str(root), "categories": ["pcb1"]}
    with pytest.raises(DatasetError, match=r"1cls\.csv line \d+: anomalous image .*000\.JPG"):
        build_manifest("visa", cfg, "pcb1", progress=False)


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
    df = build_manifest("realiad", cfg, "audiojack", progress=False)
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
        build_manifest("realiad", cfg, "audiojack", progress=False)


def _coco_tree(root: Path) -> Path:
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
    return root


def test_coco_ad_reads_the_meta_json(tmp_path):
    root = _coco_tree(tmp_path / "coco")
    cfg = {"kind": "coco_ad", "root": str(root), "categories": ["split_0", "split_1"]}
    df = build_manifest("coco", cfg, "split_0", progress=False)
    assert set(df["category"]) == {"split_0"} and len(df) == 4
    assert df["label"].tolist() == [1, 0, 0, 0]  # sorted: test/anomaly, test/good, train
    assert df.iloc[0]["mask_path"] == os.path.join(str(root), "val2017_mask_ad_20_0",
                                                   "000000000724.png")
    with pytest.raises(DatasetError, match="meta_20_1.json"):
        build_manifest("coco", cfg, "split_1", progress=False)
