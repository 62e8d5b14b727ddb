"""What the train and infer rules of the workflow do.

The scripts in ``workflow/scripts`` read Snakemake's inputs and call one
function here; everything testable lives in the library, which never
imports snakemake.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diffad.data import read_manifest
from diffad.device import pick_device, seed_everything
from diffad.errors import DatasetError
from diffad.io import provenance, write_json, write_npy, write_parquet
from diffad.methods import Runtime, build_method

log = logging.getLogger(__name__)

#: The category under which methods that train one model per dataset store it.
ALL_CATEGORIES = "all"

def make_runtime(settings: dict[str, Any], image_size: int) -> Runtime:
    """Runtime from the config's ``runtime:`` block and the dataset's image size."""
    return Runtime(
        device=pick_device(settings.get("device", "auto")),
        weights_root=Path(settings.get("weights_dir", "resources/weights")),
        image_size=image_size,
        seed=int(settings.get("seed", 0)),
        num_workers=int(settings.get("num_workers", 0)),
        cache_dir=Path(settings["cache_dir"]) if settings.get("cache_dir") else None,
    )


def select(manifest: pd.DataFrame, category: str, split: str, manifest_path: str) -> pd.DataFrame:
    """Rows of one split of one category (``all``: every category), in manifest order."""
    rows = manifest[manifest["split"] == split]
    if category != ALL_CATEGORIES:
        rows = rows[rows["category"] == category]
    if rows.empty:
        known = sorted(manifest["category"].unique())
        raise DatasetError(
            f"{manifest_path}: no {split} images for category '{category}' "
            f"(categories in this manifest: {known})"
        )
    return rows.reset_index(drop=True)


def train(
    method_cfg: dict[str, Any], manifest_path: str, category: str, model_dir: str,
    runtime: Runtime,
) -> None:
    """Fit the method on the train split; write weights, loss curve and metadata."""
    rows = select(read_manifest(manifest_path), category, "train", manifest_path)
    seed_everything(runtime.seed)
    method = build_method(method_cfg, runtime)
    log.info("training %s on %d images of %s on %s", method_cfg["kind"], len(rows), category,
             runtime.device)
    start = time.perf_counter()
    out = Path(model_dir)
    loss = method.fit(rows["image_path"].tolist(), checkpoint_dir=out)
    train_s = time.perf_counter() - start
    method.save(out)
    write_parquet(loss, out / "loss.parquet")
    # Written last: its presence says the folder is complete.
    write_json({
        **provenance(method_cfg, runtime.seed),
        "category": category,
        "n_train": len(rows),
        "train_s": train_s,
        "params": method.num_parameters(),
        "device": str(runtime.device),
    }, out / "metadata.json")
    log.info("trained in %.1f s", train_s)


def infer(
    method_cfg: dict[str, Any], manifest_path: str, category: str, model_dir: str,
    scores_path: str, maps_path: str, runtime: Runtime,
) -> None:
    """Score the test split: a Parquet row per image and a float16 map stack in row order."""
    manifest = read_manifest(manifest_path)
    rows = select(manifest, category, "test", manifest_path)
    seed_everything(runtime.seed)
    method = build_method(method_cfg, runtime)
    method.load(Path(model_dir))
    paths = rows["image_path"].tolist()
    batch_size = getattr(method.params, "batch_size", 8)
    train_paths = select(manifest, category, "train", manifest_path)["image_path"].tolist()

    scores, maps, latency, detectors = [], [], [], {}
    for pred, per_image_ms in method.score_files(paths, batch_size, train_paths):
        scores.append(pred.scores)
        maps.append(pred.maps.astype(np.float32))
        latency.extend([per_image_ms] * len(pred.scores))
        for name, values in pred.detectors.items():
            detectors.setdefault(name, []).append(values)
    detectors = {name: np.concatenate(values) for name, values in detectors.items()}

    table = rows[["image_path", "category", "defect_type", "label", "mask_path"]].copy()
    table["score"] = method.combine_scores(np.concatenate(scores), detectors).astype(np.float64)
    for name, values in detectors.items():
        table[f"score_{name}"] = values.astype(np.float64)
    table["latency_ms"] = latency
    table["nfe"] = method.nfe
    stack = np.concatenate(maps)
    if not np.isfinite(stack).all() or not np.isfinite(table["score"]).all():
        raise FloatingPointError(f"{method_cfg['kind']} produced non-finite scores for {category}")
    half = np.finfo(np.float16)
    write_npy(np.clip(stack, half.min, half.max).astype(np.float16), maps_path)
    write_parquet(table, scores_path)
