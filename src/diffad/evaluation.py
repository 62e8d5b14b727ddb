"""What the evaluate rule does: a variant's score tier, then one row of metrics.

1. Read the stored outputs of the variant's inference (:mod:`.outputs`).
2. Apply the kind's score tier (:meth:`MethodKind.score`) with the
   variant's score parameters: one image score and one map per test image.
3. Metrics under ``unified`` (ours: exact, never flipped) and, where the
   variant names a paper protocol (``protocol: diad``...), under that one
   too, in ``<metric>_protocol`` columns beside ours.
4. Metrics that cannot be defined (a split of one class, no masks) are NaN
   with the reason in ``note``; they are never 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diffad.data import load_mask
from diffad.methods import Scored, kind_of, params_of
from diffad.methods.base import STATISTICS
from diffad.metrics import IMAGE_KEYS, PIXEL_KEYS, evaluate_protocol
from diffad.scoring.outputs import Outputs, read_outputs

QUALITY = IMAGE_KEYS + PIXEL_KEYS


def apply_score_tier(method_cfg: dict[str, Any], scores_path: str, maps_path: str,
                     train_path: str | None = None) -> tuple[Outputs, Scored]:
    """The stored outputs and the variant's image scores and maps (numpy only)."""
    outputs = read_outputs(scores_path, maps_path, train_path)
    scored = kind_of(method_cfg).score(params_of(method_cfg), outputs)
    if len(scored.scores) != len(outputs.table) or len(scored.maps) != len(outputs.table):
        raise ValueError(f"{method_cfg['kind']}'s score tier returned {len(scored.scores)} "
                         f"scores and {len(scored.maps)} maps for {len(outputs.table)} images")
    return outputs, scored


def center_crop(array: np.ndarray, side: int | None) -> np.ndarray:
    """The central ``side`` x ``side`` pixels of (N, H, W) ``array`` (all of it for None)."""
    if side is None or side >= array.shape[-1]:
        return array
    top, left = (array.shape[-2] - side) // 2, (array.shape[-1] - side) // 2
    return array[..., top:top + side, left:left + side]


def evaluate(method_cfg: dict[str, Any], scores_path: str, maps_path: str, train_path: str,
             model_dir: str, image_size: int, labels: dict[str, str]) -> pd.DataFrame:
    """One row of metrics for one (method, dataset, category); ``labels`` name it."""
    outputs, scored = apply_score_tier(method_cfg, scores_path, maps_path, train_path)
    table = outputs.table
    anomalous = table["label"].to_numpy() == 1
    notes = []
    masks = None
    if anomalous.any() and table.loc[anomalous, "mask_path"].notna().all():
        masks = np.zeros((len(table), image_size, image_size), dtype=bool)
        for i, path in enumerate(table["mask_path"]):
            if isinstance(path, str):
                masks[i] = load_mask(path, image_size)
        masks = center_crop(masks, scored.crop)
    elif anomalous.any():
        notes.append("pixel metrics n/a: anomalous test images without ground-truth masks")
    maps = center_crop(scored.maps, scored.crop) if masks is not None else None
    protocol = params_of(method_cfg).protocol
    row: dict[str, Any] = {**labels}
    if anomalous.all() or not anomalous.any():
        which = "anomalous" if anomalous.all() else "normal"
        notes = [f"metrics n/a: the test split has only {which} images"]
        row.update(dict.fromkeys(QUALITY, float("nan")))
    else:
        row.update(evaluate_protocol("unified", anomalous, scored.scores, masks, maps))
        if protocol != "unified":
            ours = evaluate_protocol(protocol, anomalous, scored.scores, masks, maps)
            row.update({f"{k}_protocol": v for k, v in ours.items()})
        if masks is not None and not masks.any():
            notes.append("pixel metrics n/a: the masks mark no anomalous pixel")
    unknown = set(scored.statistics) - set(STATISTICS)
    if unknown:
        raise ValueError(f"{method_cfg['kind']}'s score tier returned unknown statistics "
                         f"{sorted(unknown)}; known: {list(STATISTICS)}")
    row.update({name: float(value) for name, value in scored.statistics.items()})
    meta = json.loads((Path(model_dir) / "metadata.json").read_text())
    row.update({
        "protocol": protocol,
        "latency_ms": float(table["latency_ms"].mean()),
        "nfe": int(table["nfe"].iloc[0]),
        "params": int(meta["params"]),
        "train_s": float(meta["train_s"]),
        "n_test": len(table),
        # The infer job's peak memory, and its train job's (where recorded).
        **{f"infer_{k}": float(table[k].iloc[0]) for k in ("peak_rss_mb", "cuda_peak_mb")
           if k in table},
        **{f"train_{k}": float(meta[k]) for k in ("peak_rss_mb", "cuda_peak_mb", "s_per_step")
           if k in meta},
        "n_anomalous": int(anomalous.sum()),
        "note": "; ".join(notes),
    })
    return pd.DataFrame([row])
