"""The infer stage's files, and :class:`Outputs`, what a kind's score tier reads.

Per (inference variant, dataset, category) the infer rule writes, under
the scores folder of a variant and dataset (:data:`diffad.paths.PATHS` ``.scores``):

``<category>.parquet``
    one row per test image in manifest order: ``image_path``, ``category``,
    ``defect_type``, ``label``, ``mask_path``, a ``score_<detector>`` column
    per detector, ``latency_ms``, ``nfe``.
``<category>.maps.safetensors``
    one float16 (N, H, W) stack per detector that has a map, keyed by the
    detector's name, rows in Parquet order. safetensors reads one stack
    without the others.
``train/<category>.parquet``
    ``image_path`` and the ``score_<detector>`` columns of the train split,
    for scores standardised by train statistics; no rows where the kind
    does not score the train split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from safetensors import safe_open
from safetensors.numpy import save_file

from diffad.errors import DatasetError
from diffad.io import atomic_path, write_parquet

log = logging.getLogger(__name__)

SCORE_PREFIX = "score_"
#: Manifest columns carried into the scores table.
ROW_COLUMNS = ["image_path", "category", "defect_type", "label", "mask_path"]


def stack(batches: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate per-batch ``{detector: array}`` dicts along the first axis."""
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        for name, values in batch.items():
            parts.setdefault(name, []).append(np.asarray(values))
    return {name: np.concatenate(values) for name, values in parts.items()}


def score_table(rows: pd.DataFrame, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """``rows``' manifest columns plus a float64 ``score_<detector>`` column each."""
    table = rows[[c for c in ROW_COLUMNS if c in rows.columns]].reset_index(drop=True).copy()
    for name, values in scores.items():
        if len(values) != len(table):
            raise ValueError(f"detector {name!r} has {len(values)} scores for {len(table)} rows")
        table[SCORE_PREFIX + name] = np.asarray(values, dtype=np.float64)
    return table


def write_maps(maps: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Each detector's (N, H, W) maps as float16 (clipped to its range), atomically."""
    half = np.finfo(np.float16)
    tensors = {name: np.ascontiguousarray(np.clip(m, half.min, half.max).astype(np.float16))
               for name, m in maps.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def finite_outputs(table: pd.DataFrame, maps: dict[str, np.ndarray], scores_path: str,
                   nonfinite: str = "error") -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A split's scores and maps, checked: non-finite values stop the job
    (``nonfinite="error"``) or, in a rehearsal (``"record"``), become 0 with a warning: a
    network with random weights may diverge where a trained one does not."""
    columns = [c for c in table.columns if c.startswith(SCORE_PREFIX)]
    bad = [c for c in columns if not np.isfinite(table[c]).all()]
    bad += [name for name, m in maps.items() if not np.isfinite(m).all()]
    if bad and nonfinite != "record":
        raise FloatingPointError(f"non-finite values in {bad} for {scores_path}")
    if bad:
        log.warning("non-finite values in %s for %s, written as 0 (runtime.nonfinite: "
                    "record)", bad, scores_path)
        table = table.copy()
        table[columns] = table[columns].where(np.isfinite(table[columns]), 0.0)
        maps = {name: np.where(np.isfinite(m), m, 0) for name, m in maps.items()}
    return table, maps


def write_outputs(table: pd.DataFrame, maps: dict[str, np.ndarray], scores_path: str,
                  maps_path: str, nonfinite: str = "error") -> None:
    """The test split's scores table and map stacks, checked by :func:`finite_outputs`."""
    table, maps = finite_outputs(table, maps, scores_path, nonfinite)
    write_maps(maps, maps_path)
    write_parquet(table, scores_path)


@dataclass
class Outputs:
    """One inference variant's stored outputs for one category, as the score tier reads them."""

    table: pd.DataFrame  #: test rows (see the module docstring)
    maps_path: str
    train: pd.DataFrame | None = None  #: train-split scores, None where not stored
    _maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def detectors(self) -> list[str]:
        return [c[len(SCORE_PREFIX):] for c in self.table.columns if c.startswith(SCORE_PREFIX)]

    def scores(self, detector: str) -> np.ndarray:
        """(N,) float64 image scores of ``detector`` on the test split."""
        return self.table[self._column(detector, self.table)].to_numpy(np.float64)

    def train_scores(self, detector: str) -> np.ndarray:
        """(M,) scores of ``detector`` on the train split."""
        if self.train is None or self.train.empty:
            raise DatasetError(f"{self.maps_path}: no train-split scores were stored; this "
                               "score needs the infer rule to score the train split")
        return self.train[self._column(detector, self.train)].to_numpy(np.float64)

    def map(self, detector: str) -> np.ndarray:
        """(N, H, W) float32 maps of ``detector``, read on first use."""
        if detector not in self._maps:
            with safe_open(self.maps_path, framework="np") as fh:
                if detector not in fh.keys():
                    raise DatasetError(f"{self.maps_path} has no map {detector!r}; "
                                       f"it has {sorted(fh.keys())}")
                self._maps[detector] = fh.get_tensor(detector).astype(np.float32)
        return self._maps[detector]

    def _column(self, detector: str, table: pd.DataFrame) -> str:
        column = SCORE_PREFIX + detector
        if column not in table.columns:
            raise DatasetError(f"no detector {detector!r} in the outputs beside "
                               f"{self.maps_path}; stored: {self.detectors}")
        return column


def read_outputs(scores_path: str, maps_path: str, train_path: str | None = None) -> Outputs:
    table = pd.read_parquet(scores_path)
    train = pd.read_parquet(train_path) if train_path else None
    return Outputs(table=table, maps_path=str(maps_path), train=train)
