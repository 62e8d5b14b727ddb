"""The one training loop every method uses: resumable, guarded, mixed precision.

A method gives the :class:`Trainer` its networks, an optimizer, a learning-rate
schedule, the training data (a tensor, or a dataset of samples) and a loss
function ``loss_fn(batch, generator) -> scalar tensor``; the trainer runs

1. epochs over a random order of the data drawn from one ``torch.Generator``
   (seeded by the run's seed), in micro-batches of ``batch_size``;
2. per optimizer step, ``grad_accum`` micro-batches (the last group of an
   epoch may be smaller; each loss is divided by its group's size, so a step
   sees the mean gradient), autocast on CUDA (bf16 where the GPU supports it,
   fp16 with a gradient scaler otherwise), optional gradient-norm clipping,
   the optimizer and schedule steps, an optional EMA update;
3. a NaN / inf loss stops the job with a :class:`~diffad.errors.TrainingError`
   naming the step; the loss is logged every ``log_every`` steps;
4. every ``checkpoint_every`` optimizer steps, an atomic checkpoint in the
   session's folder: networks, optimizer, schedule, scaler, EMA, the
   generator's state at the start of the epoch and now, the global RNG
   states, the position in the epoch, the loss curve and the seconds spent.

After a kill the same call resumes from the checkpoint: the epoch's order is
drawn again from the saved epoch-start state, the micro-batches already done
are skipped, and the generator continues from the saved state, so the run
ends with the same weights as an uninterrupted one. A checkpoint made with
other settings or data is refused with a warning and training restarts.

The loss curve (``step``, ``epoch``, ``loss``, ``lr``, ``seconds``) is returned
as a DataFrame; the session's stopwatch holds the training time of every run
that contributed, resumed ones included.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from diffad.device import autocast, mixed_precision_dtype
from diffad.errors import TrainingError
from diffad.io import atomic_path
from diffad.logs import progress
from diffad.training.settings import TrainerSettings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LossFn = Callable[[Any, torch.Generator], torch.Tensor]


@dataclass
class Stopwatch:
    """Training seconds across runs: this run's wall time plus resumed runs' seconds."""

    previous: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return self.previous + time.perf_counter() - self.started


@dataclass
class TrainingSession:
    """Where a training checkpoints, and its clock; one per train job."""

    checkpoint_dir: Path | None = None
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    #: Called after every optimizer step with the step number (tests, progress hooks).
    on_step: Callable[[int], None] | None = None


def _frozen(net: torch.nn.Module) -> set[str]:
    return {n for n, p in net.named_parameters(remove_duplicate=False) if not p.requires_grad}


def checkpoint_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of ``net``: its trainable parameters and its buffers. Frozen
    parameters are the pretrained weights the resumed job loads again, so a LoRA's
    checkpoint is its adapter (megabytes), not the whole fp32 UNet (3.4 GB)."""
    frozen = _frozen(net)
    return {k: v for k, v in net.state_dict().items() if k not in frozen}


class Trainer:
    """Runs :class:`TrainerSettings` over ``networks`` (see the module docstring)."""

    def __init__(self, networks: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                 settings: TrainerSettings, device: torch.device,
                 session: TrainingSession | None = None,
                 schedule: Callable[[torch.optim.Optimizer, int], Any] | None = None,
                 fingerprint: str = ""):
        self.networks, self.optimizer, self.settings = networks, optimizer, settings
        self.device = device
        self.session = session or TrainingSession()
        self.schedule_fn = schedule
        self.fingerprint = fingerprint
        dtype = mixed_precision_dtype(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        self.ema = None
        if settings.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel([p for n in networks.values() for p in n.parameters()],
                                decay=settings.ema_decay)

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for n in self.networks.values() for p in n.parameters() if p.requires_grad]

    def steps_per_epoch(self, n: int) -> int:
        micro = math.ceil(n / self.settings.batch_size)
        return math.ceil(micro / self.settings.grad_accum)

    def fit(self, data: torch.Tensor | torch.utils.data.Dataset, loss_fn: LossFn) -> pd.DataFrame:
        s = self.settings
        n = len(data)
        if n == 0:
            raise TrainingError("no training samples")
        total = s.epochs * self.steps_per_epoch(n)
        if s.max_steps is not None:
            total = s.max_steps
        epochs = math.ceil(total / self.steps_per_epoch(n))
        schedule = self.schedule_fn(self.optimizer, total) if self.schedule_fn else None
        generator = torch.Generator().manual_seed(s.seed)
        state = _State()
        checkpoint = (self.session.checkpoint_dir / CHECKPOINT
                      if self.session.checkpoint_dir else None)
        # What the checkpoint must have been made with to resume: not the run-control
        # fields (a changed checkpoint interval resumes).
        shape = {k: v for k, v in asdict(s).items() if k not in TrainerSettings.RUN_CONTROL}
        key = f"{self.fingerprint}|n={n}|{shape}"
        if checkpoint is not None and checkpoint.is_file():
            self._resume(checkpoint, key, generator, schedule, state)
        for net in self.networks.values():
            net.train()
        micro_per_epoch = math.ceil(n / s.batch_size)
        bar = progress(range(state.step, total), desc="training", total=total - state.step,
                       unit="step", interval=60.0)
        steps = iter(bar)
        for epoch in range(state.epoch, epochs):
            state.epoch = epoch
            if state.position == 0:
                state.epoch_start = generator.get_state()
            else:  # resumed mid-epoch: draw this epoch's order again
                now = generator.get_state()
                generator.set_state(state.epoch_start)
            order = torch.randperm(n, generator=generator)
            if state.position:
                generator.set_state(now)
            groups = range(state.position, micro_per_epoch, s.grad_accum)
            for first in groups:
                if state.step >= total:
                    break
                last = min(first + s.grad_accum, micro_per_epoch)
                loss = self._step([self._batch(data, order, i) for i in range(first, last)],
                                  loss_fn, generator, schedule, state)
                state.position = last % micro_per_epoch
                next(steps, None)
                seconds = self.session.stopwatch.seconds()
                lr = self.optimizer.param_groups[0]["lr"]
                state.losses.append((state.step, epoch, loss, lr, seconds))
                if state.step % s.log_every == 0 or state.step == total:
                    log.info("step %d/%d epoch %d loss %.5f lr %.3g", state.step, total,
                             epoch + 1, loss, lr)
                if self.session.on_step is not None:
                    self.session.on_step(state.step)
                if (checkpoint is not None and state.step % s.checkpoint_every == 0
                        and state.step < total):
                    self._save(checkpoint, key, generator, schedule, state)
            state.position = 0
        next(steps, None)  # let the progress report finish
        if self.ema is not None:
            self.ema.copy_to(self.parameters)
        if checkpoint is not None and checkpoint.is_file():
            checkpoint.unlink()
        return pd.DataFrame(state.losses, columns=["step", "epoch", "loss", "lr", "seconds"])

    # ------------------------------------------------------------------ steps

    def _batch(self, data, order: torch.Tensor, index: int):
        rows = order[index * self.settings.batch_size:(index + 1) * self.settings.batch_size]
        if isinstance(data, torch.Tensor):
            return data[rows]
        samples = [data[int(i)] for i in rows]
        return torch.utils.data.default_collate(samples)

    def _step(self, micro_batches: list, loss_fn: LossFn, generator: torch.Generator,
              schedule, state: _State) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for batch in micro_batches:
            with autocast(self.device):
                loss = loss_fn(batch, generator)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"loss is {value} at optimizer step {state.step + 1} (epoch "
                    f"{state.epoch + 1}): lower the learning rate or check the inputs")
            self.scaler.scale(loss.float() / len(micro_batches)).backward()
            total += value / len(micro_batches)
        if self.settings.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.parameters, self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if schedule is not None:
            schedule.step()
        if self.ema is not None:
            self.ema.step(self.parameters)
        state.step += 1
        return total

    # ------------------------------------------------------------- checkpoints

    def _save(self, path: Path, key: str, generator: torch.Generator, schedule,
              state: _State) -> None:
        payload = {
            "key": key,
            "networks": {name: checkpoint_state(net) for name, net in self.networks.items()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": schedule.state_dict() if schedule is not None else None,
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "generator": generator.get_state(),
            "rng": _global_rng_state(),
            # A checkpoint at the end of an epoch resumes at the start of the next.
            "state": {**asdict(state), "epoch": state.epoch + (state.position == 0)},
            "seconds": self.session.stopwatch.seconds(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        log.info("checkpoint at step %d: %s", state.step, path)

    def _resume(self, path: Path, key: str, generator: torch.Generator, schedule,
                state: _State) -> None:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if payload.get("key") != key:
            log.warning("ignoring %s: it was made with other settings or data", path)
            return
        for name, net in self.networks.items():
            missing, unexpected = net.load_state_dict(payload["networks"][name], strict=False)
            if unexpected or set(missing) - _frozen(net):
                raise TrainingError(f"{path}: the checkpoint of network {name!r} does not "
                                    f"match it (missing {sorted(set(missing) - _frozen(net))[:5]}"
                                    f", unexpected {unexpected[:5]})")
        self.optimizer.load_state_dict(payload["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(payload["schedule"])
        self.scaler.load_state_dict(payload["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(payload["ema"])
        generator.set_state(payload["generator"])
        _set_global_rng_state(payload["rng"])
        for name, value in payload["state"].items():
            setattr(state, name, value)
        self.session.stopwatch.previous = payload["seconds"]
        self.session.stopwatch.started = time.perf_counter()
        log.info("resuming from %s at step %d (epoch %d), %.0f s trained before", path,
                 state.step, state.epoch + 1, payload["seconds"])


@dataclass
class _State:
    step: int = 0  #: optimizer steps done
    epoch: int = 0  #: the epoch in progress (or the next one)
    position: int = 0  #: micro-batches of that epoch already done
    epoch_start: Any = None  #: generator state when that epoch's order was drawn
    losses: list = field(default_factory=list)


def _global_rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def iterate_batches(data: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """``data`` in order, ``batch_size`` rows at a time (inference over features)."""
    for start in range(0, len(data), batch_size):
        yield data[start:start + batch_size]


__all__ = ["CHECKPOINT", "Stopwatch", "Trainer", "TrainerSettings", "TrainingSession",
           "checkpoint_state", "iterate_batches"]
