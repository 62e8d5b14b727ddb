"""The shared trainer's settings, declared once for every network that trains on it.

:class:`TrainerParams` is a pydantic mixin: a method kind's ``Params`` (and the
autoencoder's) inherits its fields with their tiers, may redeclare one to change
its default or description, and builds the trainer's :class:`TrainerSettings`
with :meth:`TrainerParams.trainer_settings`. Torch-free: the DAG build reads these
declarations; only train jobs build a :class:`~diffad.training.Trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from diffad.tiers import run, train


@dataclass
class TrainerSettings:
    epochs: int
    batch_size: int
    grad_accum: int = 1
    grad_clip: float | None = None  #: max gradient norm; None: no clipping
    ema_decay: float | None = None  #: None: no EMA; the EMA weights are the result
    checkpoint_every: int = 500  #: optimizer steps
    log_every: int = 50  #: optimizer steps
    seed: int = 0
    #: stop after this many optimizer steps (a recipe given in steps, e.g. DreamBooth's
    #: 600), mid-epoch if need be; None: ``epochs`` full epochs
    max_steps: int | None = None

    #: Fields that say how a run is watched and saved, not what it computes: a checkpoint
    #: written with other values of them resumes.
    RUN_CONTROL = ("checkpoint_every", "log_every")


class TrainerParams(BaseModel):
    """The trainer's fields (``train`` tier: they shape the model; ``run`` tier: how the
    job checkpoints and logs, which never reruns or splits a model)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              validate_default=True)

    epochs: int = train(100, ge=1)
    max_steps: int | None = train(
        None, "stop after this many optimizer steps (a recipe given in steps); None: "
        "`epochs` full epochs", ge=1)
    batch_size: int = train(8, "images per micro-batch", ge=1)
    grad_accum: int = train(1, "micro-batches per optimizer step", ge=1)
    learning_rate: float = train(1e-4, gt=0)
    grad_clip: float | None = train(None, "max gradient norm; None: no clipping", gt=0)
    ema_decay: float | None = train(None, "EMA of the weights; None: off", gt=0, lt=1)
    checkpoint_every: int = run(500, "optimizer steps between resumable checkpoints", ge=1)
    log_every: int = run(50, "optimizer steps between loss lines in the log", ge=1)

    def trainer_settings(self, seed: int) -> TrainerSettings:
        """The settings of one training run with ``seed``."""
        return TrainerSettings(
            epochs=self.epochs, max_steps=self.max_steps, batch_size=self.batch_size,
            grad_accum=self.grad_accum, grad_clip=self.grad_clip, ema_decay=self.ema_decay,
            checkpoint_every=self.checkpoint_every, log_every=self.log_every, seed=seed)


__all__ = ["TrainerParams", "TrainerSettings"]
