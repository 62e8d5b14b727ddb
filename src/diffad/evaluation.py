"""What the evaluate rule does: one row of metrics per (method, dataset, category).

Kept apart from :mod:`diffad.stages` so that it needs no torch: the evaluate
rule runs in the light ``envs/data.yaml`` environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from diffad.data import load_mask
from diffad.errors import DatasetError
from diffad.metrics import compute_all


def evaluate(
    scores_path: str, maps_path: str, model_dir: str, image_size: int,
    labels: dict[str, str],
) -> pd.DataFrame:
    """One row of metrics for one (method, dataset, category); ``labels`` name it."""
    table = pd.read_parquet(scores_path)
    maps = np.load(maps_path, mmap_mode="r")
    if len(maps) != len(table):
        raise DatasetError(f"{maps_path} has {len(maps)} maps but {scores_path} has "
                           f"{len(table)} rows; rerun the infer rule")
    anomalous = table["label"] == 1
    has_masks = bool(anomalous.any() and table.loc[anomalous, "mask_path"].notna().all())
    masks = None
    if has_masks:
        masks = np.zeros(maps.shape, dtype=bool)
        for i, path in enumerate(table["mask_path"]):
            if path is not None and not pd.isna(path):
                masks[i] = load_mask(path, image_size)
    metrics = compute_all(table["label"].to_numpy(), table["score"].to_numpy(),
                          masks=masks, maps=maps if has_masks else None)
    meta = json.loads((Path(model_dir) / "metadata.json").read_text())
    row = {
        **labels,
        **{k: float(v) for k, v in metrics.items()},
        "latency_ms": float(table["latency_ms"].mean()),
        "nfe": int(table["nfe"].iloc[0]),
        "params": int(meta["params"]),
        "train_s": float(meta["train_s"]),
        "n_test": len(table),
        "n_anomalous": int(anomalous.sum()),
    }
    return pd.DataFrame([row])
