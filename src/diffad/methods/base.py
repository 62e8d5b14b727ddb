"""The interface every method kind implements, and the defaults machinery.

A method is trained on the normal images of one (dataset, category) or of a
whole dataset, saved as a folder, loaded back and asked for anomaly scores.
Its hyperparameters are a dataclass with defaults: the config may give any
subset of them (``{kind: patchcore}`` alone is valid).
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from diffad.device import synchronize
from diffad.errors import ConfigError


@dataclass
class BatchPrediction:
    """What a method returns for one batch of images."""

    scores: np.ndarray  #: (B,) image anomaly scores, higher is more anomalous
    maps: np.ndarray  #: (B, H, W) pixel anomaly maps at the input resolution
    detectors: dict[str, np.ndarray] = field(default_factory=dict)  #: extra (B,) scores by name


@dataclass
class Runtime:
    """Where and how a method runs; not a hyperparameter, so not in the config hash."""

    device: torch.device
    weights_root: Path  #: cache of pretrained weights written by the ``fetch_weights`` rule
    image_size: int
    seed: int = 0
    num_workers: int = 0
    cache_dir: Path | None = None  #: shared cache of derived data (backbone features)


class AnomalyMethod(ABC):
    """Base class of the method kinds. Subclasses set ``kind`` and ``Params``."""

    kind: ClassVar[str]
    Params: ClassVar[type]
    #: True for methods that train one model per dataset (category ``all``), e.g. VLMDiff.
    per_dataset: ClassVar[bool] = False
    #: Hyperparameters that change inference only: variants that differ in nothing
    #: else share one trained model (one train job, e.g. a grid over sampling steps).
    inference_params: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Any, runtime: Runtime):
        self.params = params
        self.runtime = runtime

    @abstractmethod
    def fit(self, image_paths: list[str], checkpoint_dir: Path | None = None) -> pd.DataFrame:
        """Train on normal images; return the loss curve (columns ``step``, ``loss``).

        Methods that train for long write resumable checkpoints into ``checkpoint_dir``.
        """

    @abstractmethod
    def predict(self, images: torch.Tensor) -> BatchPrediction:
        """Score a batch of images, (B, 3, H, W) RGB in [0, 1] on ``runtime.device``."""

    def score_files(
        self, paths: list[str], batch_size: int, train_paths: list[str]
    ) -> Iterator[tuple[BatchPrediction, float]]:
        """Predictions for ``paths`` in order, batch by batch, with ms per image.

        The first batch runs once untimed: lazy initialisation and allocator
        warm-up are not latency. ``train_paths`` serve methods whose scores are
        standardized by train-split statistics.
        """
        from diffad.methods.loader import image_batches

        device = self.runtime.device
        warm = False
        for images in image_batches(paths, self.runtime, batch_size, desc="inference"):
            images = images.to(device)
            if not warm:
                self.predict(images)
                warm = True
            synchronize(device)
            start = time.perf_counter()
            prediction = self.predict(images)
            synchronize(device)
            yield prediction, 1000 * (time.perf_counter() - start) / len(images)

    def combine_scores(self, scores: np.ndarray, detectors: dict[str, np.ndarray]) -> np.ndarray:
        """Image scores of the whole split, for scores that need the split (e.g. its range)."""
        return scores

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the trained state into ``folder`` (safetensors, atomically)."""

    @abstractmethod
    def load(self, folder: Path) -> None:
        """Restore the state written by :meth:`save`."""

    @property
    def nfe(self) -> int:
        """Diffusion network evaluations per image (0 for methods without one)."""
        return 0

    @abstractmethod
    def num_parameters(self) -> int:
        """Parameters of the networks used at inference."""

    @classmethod
    def applicable(cls, resolved: dict[str, Any]) -> bool:
        """False for grid points that do not exist for this kind (left out of the DAG)."""
        return True

    @classmethod
    def weight_names(cls, params: Any) -> list[str]:
        """Pretrained backbones this configuration loads from the weights cache."""
        return []


def check_params(params_cls: type, values: dict[str, Any], where: str) -> Any:
    """Build ``params_cls`` from ``values``, naming ``where.key`` for any bad entry."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown parameter(s) {unknown}; known: {sorted(fields)}"
        )
    defaults = params_cls()
    choices = getattr(params_cls, "CHOICES", {})
    for key, value in values.items():
        _check_type(getattr(defaults, key), value, f"{where}.{key}")
        if key in choices and value not in choices[key]:
            raise ConfigError(f"{where}.{key}: {value!r} is not one of {list(choices[key])}")
    return params_cls(**values)


def _check_type(default: Any, value: Any, where: str) -> None:
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{where}: expected {type(default).__name__} like {default!r}, got {value!r}"
        )


