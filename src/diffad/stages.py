"""What the train and infer rules of the workflow do.

The scripts in ``workflow/scripts`` read Snakemake's inputs and call one
function here; everything testable lives in the library, which never
imports snakemake.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diffad.data import check_unchanged, read_manifests
from diffad.device import peak_memory, seed_everything
from diffad.errors import DatasetError
from diffad.io import provenance, write_json, write_parquet
from diffad.methods import (
    ALL_CATEGORIES,
    AnomalyModel,
    Artefacts,
    build_model,
    kind_of,
    load_model,
    params_of,
)
from diffad.methods.base import MODEL_MARKER
from diffad.runtime import Runtime
from diffad.scoring.outputs import finite_outputs, score_table, stack, write_outputs
from diffad.training import TrainingSession
from diffad.training.cost import step_cost

log = logging.getLogger(__name__)


def select(manifest: pd.DataFrame, category: str, split: str,
           manifests: dict[str, str]) -> pd.DataFrame:
    """Rows of one split of one category (``all``: every category), in manifest order,
    after checking that their images did not change since the manifests were built."""
    rows = manifest[manifest["split"] == split]
    if category != ALL_CATEGORIES:
        rows = rows[rows["category"] == category]
    if rows.empty:
        known = sorted(manifest["category"].unique())
        raise DatasetError(
            f"{sorted(manifests.values())}: no {split} images for category '{category}' "
            f"(categories in these manifests: {known})"
        )
    check_unchanged(rows, manifests)
    return rows.reset_index(drop=True)


def by_category(manifest_paths: list[str]) -> dict[str, str]:
    """Per-category manifest paths (:data:`~diffad.paths.PATHS` ``.manifest``), by category."""
    return {Path(p).stem: str(p) for p in manifest_paths}


def seeded(runtime: Runtime, method_cfg: dict[str, Any]) -> Runtime:
    """The runtime with the variant's own ``seed`` where it sets one (repeated runs)."""
    seed = params_of(method_cfg).seed
    return runtime if seed is None else dataclasses.replace(runtime, seed=seed)


def train(
    method_cfg: dict[str, Any], manifest_paths: list[str], category: str, model_dir: str,
    runtime: Runtime, artefacts: Artefacts | None = None,
) -> None:
    """Fit the method on the train split of the manifests' categories (``all``: every
    one); write the model folder, loss curve and metadata."""
    manifests = by_category(manifest_paths)
    rows = select(read_manifests(manifests.values()), category, "train", manifests)
    runtime = seeded(runtime, method_cfg)
    seed_everything(runtime.seed)
    model = build_model(method_cfg, runtime, artefacts)
    log.info("training %s on %d images of %s (%s) on %s", method_cfg["kind"], len(rows),
             category, ", ".join(sorted(rows["category"].unique())), runtime.device)
    out = Path(model_dir)
    session = TrainingSession(checkpoint_dir=out)
    loss = model.fit(rows, session)
    train_s = session.stopwatch.seconds()
    model.save_pretrained(out)
    write_parquet(loss, out / "loss.parquet")
    # Written last: its presence says the folder is complete.
    write_json({
        **provenance(method_cfg, runtime.seed),
        "category": category,
        "categories": sorted(rows["category"].unique()),
        "n_train": len(rows),
        "train_s": train_s,
        **step_cost(loss),
        "params": model.num_parameters(),
        "device": str(runtime.device),
        **peak_memory(),
    }, out / MODEL_MARKER)
    log.info("trained in %.1f s; wrote %s", train_s, out)


def infer(
    method_cfg: dict[str, Any], manifest_paths: list[str], category: str, model_dir: str,
    outputs: dict[str, str], runtime: Runtime, artefacts: Artefacts | None = None,
    score_train_split: bool = False,
) -> tuple[AnomalyModel, pd.DataFrame]:
    """Every detector on the test split, and on the train split with
    ``score_train_split`` (for scores standardised by train statistics):
    ``outputs`` names the ``scores``, ``maps`` and ``train_scores`` files. Returns the
    loaded model and the test rows (the strength figure reuses both)."""
    manifests = by_category(manifest_paths)
    manifest = read_manifests(manifests.values())
    rows = select(manifest, category, "test", manifests)
    runtime = seeded(runtime, method_cfg)
    seed_everything(runtime.seed)
    kind, params = kind_of(method_cfg), params_of(method_cfg)
    model = load_model(model_dir, runtime, artefacts, overrides=params.values("infer", "run"))
    log.info("scoring %d test images of %s with %s", len(rows), category, model_dir)
    predictions = list(model.infer(rows))
    table = score_table(rows, stack(p.scores for p in predictions))
    table["latency_ms"] = np.concatenate(
        [np.full(len(next(iter(p.scores.values()))), p.latency_ms) for p in predictions])
    table["nfe"] = kind.nfe(params)
    for key, value in peak_memory().items():  # the job's, on every row (like nfe)
        table[key] = value
    write_outputs(table, stack(p.maps for p in predictions), outputs["scores"], outputs["maps"],
                  runtime.nonfinite)
    train_table = score_table(rows.iloc[:0], {})
    if score_train_split:
        train_rows = select(manifest, category, "train", manifests)
        log.info("scoring %d train images for train statistics", len(train_rows))
        train_table = score_table(train_rows, stack(
            p.scores for p in model.infer(train_rows)))
        # Train statistics standardise every test score: a NaN among them is no smaller a
        # failure than one among the test scores.
        train_table, _ = finite_outputs(train_table, {}, outputs["train_scores"],
                                        runtime.nonfinite)
    write_parquet(train_table, outputs["train_scores"])
    log.info("wrote %s (%d rows; detectors %s; maps %s)", outputs["scores"], len(table),
             [c for c in table.columns if c.startswith("score_")],
             sorted(predictions[0].maps))
    return model, rows


def strength_reconstructions(
    model: AnomalyModel, rows: pd.DataFrame, strengths: tuple[float, ...],
) -> tuple[np.ndarray, list[str], dict[float, np.ndarray]]:
    """One normal and one anomalous test image of ``rows`` (the first of each) and their
    reconstructions at each strength, by a model that reconstructs by strength
    (:meth:`~diffad.methods.AnomalyModel.at_strength`): (images (N, H, W, 3), their
    defect types, strength -> reconstructions), all in [0, 1]."""
    from diffad.data.loader import image_batches

    picked = pd.concat([rows[rows["label"] == 0].head(1), rows[rows["label"] == 1].head(1)])
    images = next(image_batches(picked["image_path"].tolist(), model.runtime, len(picked)))
    images = images.to(model.runtime.device)
    out = {}
    for strength in strengths:
        model.at_strength(strength)
        log.info("reconstructing at strength %g", strength)
        out[strength] = model.reconstruct_images(images, picked).permute(0, 2, 3, 1).cpu().numpy()
    return (images.permute(0, 2, 3, 1).cpu().numpy(), picked["defect_type"].tolist(), out)
