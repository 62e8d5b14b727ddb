"""The one resumable trainer every method trains with (:mod:`.trainer`), and its settings
(:mod:`.settings`, torch-free: method declarations import them at DAG build)."""

from __future__ import annotations

import importlib
from typing import Any

from diffad.training.settings import TrainerParams, TrainerSettings

#: The torch side, imported on first use (a kind's declarations never pay for torch).
_TRAINER = ("CHECKPOINT", "Stopwatch", "Trainer", "TrainingSession", "iterate_batches")


def __getattr__(name: str) -> Any:
    if name in _TRAINER:
        return getattr(importlib.import_module("diffad.training.trainer"), name)
    raise AttributeError(f"module 'diffad.training' has no attribute {name!r}")


__all__ = ["CHECKPOINT", "Stopwatch", "Trainer", "TrainerParams", "TrainerSettings",
           "TrainingSession", "iterate_batches"]
