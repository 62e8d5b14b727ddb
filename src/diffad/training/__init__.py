"""The one resumable trainer every method trains with (:mod:`.trainer`)."""

from diffad.training.trainer import (
    CHECKPOINT,
    Stopwatch,
    Trainer,
    TrainerSettings,
    TrainingSession,
    iterate_batches,
)

__all__ = ["CHECKPOINT", "Stopwatch", "Trainer", "TrainerSettings", "TrainingSession",
           "iterate_batches"]
