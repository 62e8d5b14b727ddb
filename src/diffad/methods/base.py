"""The method contract: a kind's declarations, and the model that trains and infers.

A method kind is two classes:

:class:`MethodKind` (torch-free; read when the DAG is built and by evaluate)
    its ``Params`` (fields tagged train / infer / score, :mod:`.params`),
    what it needs from upstream for given parameters (:class:`Requirements`:
    pretrained weights by source, caption tables, a finetuned autoencoder),
    whether it trains one model per dataset, its NFE, and its *score tier*:
    :meth:`MethodKind.score` turns the stored per-detector scores and maps
    (:class:`~diffad.scoring.outputs.Outputs`) into one image score and one
    map per test image, with numpy only.

:class:`AnomalyModel` (the torch side, imported by train and infer jobs only)
    ``fit`` on the manifest rows of the normal train images, ``predict`` a
    batch, ``save_networks`` / ``load_networks`` into a model folder. Every
    detector's score and map is returned (:class:`Prediction`), none is
    chosen here: that is the score tier's job.

A model folder holds ``config.json`` (kind and parameters), one entry per
network (``save_pretrained`` layout where the network is a diffusers or
transformers model, a safetensors file otherwise), and ``metadata.json``
written last as the completeness marker; :func:`diffad.methods.load_model`
rebuilds the model from the folder alone.
"""

from __future__ import annotations

import importlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from diffad.data.options import ALL_CATEGORIES
from diffad.methods.params import MethodParams

if TYPE_CHECKING:  # torch-side types; this module stays importable without torch
    import torch

    from diffad.runtime import Runtime
    from diffad.scoring.outputs import Outputs
    from diffad.training import TrainingSession

#: Split-level statistics a score tier may report beside the metrics (:class:`Scored`), in
#: [0, 2], shown x 100 like the metrics: paper 000's three fidelity measures of the test
#: images and their reconstructions, each a mean over the images: ``ssim`` (SSIM), ``mse``
#: (squared error of [0, 1] pixels) and ``clip`` (1 - cosine of their CLIP embeddings).
STATISTICS = ("ssim", "mse", "clip")

#: Model folder files: the kind and parameters, and the completeness marker.
MODEL_CONFIG = "config.json"
MODEL_MARKER = "metadata.json"


@dataclass(frozen=True)
class Artefact:
    """An artefact made by another rule for a dataset: ``stage`` names the rule's output
    family (``captions``: one table per category of the train images, ``test_captions``:
    of the test images, ``autoencoder``: one model folder per dataset), ``name`` the
    entry of the config block that configures it (a captioner, an autoencoder)."""

    stage: str
    name: str
    #: the parameter that names it: to a rehearsal, which captions or weights a variant
    #: reads is data to the same code (:func:`diffad.plan.rehearsal.code_path`)
    setting: str = ""


@dataclass(frozen=True)
class Requirements:
    """What a configuration needs upstream: the DAG turns it into train / infer inputs."""

    weights: tuple[str, ...] = ()  #: pretrained weight sources (:mod:`diffad.weights`)
    artefacts: tuple[Artefact, ...] = ()  #: needed by training and inference
    #: needed by inference only (captions of the test images): an infer setting that asks
    #: for them never touches the train job's inputs
    infer_artefacts: tuple[Artefact, ...] = ()


#: Resolved artefact paths handed to a model: stage -> name -> files (one per category).
Artefacts = dict[str, dict[str, list[str]]]


@dataclass
class Scored:
    """The score tier's result for a split: (N,) image scores and (N, H, W) maps."""

    scores: np.ndarray
    maps: np.ndarray
    #: Evaluate only the central ``crop`` x ``crop`` pixels of maps and masks (a method
    #: whose paper crops after resizing); None: the whole image.
    crop: int | None = None
    #: Split-level statistics that go into the metrics row beside the metrics, by name
    #: (:data:`STATISTICS`: paper 000's fidelity of the reconstructions).
    statistics: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """What a model returns for one batch: every detector, nothing fused."""

    scores: dict[str, np.ndarray]  #: detector -> (B,) image-level score
    maps: dict[str, np.ndarray] = field(default_factory=dict)  #: detector -> (B, H, W)
    latency_ms: float = 0.0  #: per image, filled in by :meth:`AnomalyModel.infer`


class MethodKind:
    """Declarations of one method kind. Subclasses set ``kind``, ``Params``, ``model``
    and implement :meth:`score`; register them with ``@register_method``."""

    kind: ClassVar[str]
    Params: ClassVar[type[MethodParams]]
    #: The :class:`AnomalyModel` subclass, or its import path ``"package.module:Class"``
    #: so that reading the declarations does not import torch.
    model: ClassVar[type[AnomalyModel] | str]
    #: The plugin module that registered the kind (set at registration); None for the
    #: kinds shipped with diffad.
    plugin: ClassVar[str | None] = None

    @classmethod
    def per_dataset(cls, params: Any) -> bool:
        """True where one model serves every category of a dataset (category ``all``)."""
        return False

    @classmethod
    def requirements(cls, params: Any) -> Requirements:
        return Requirements()

    @classmethod
    def applicable(cls, params: Any) -> bool:
        """False for grid points that do not exist for this kind (left out of the DAG)."""
        return True

    @classmethod
    def nfe(cls, params: Any) -> int:
        """Diffusion network evaluations per image (0 for methods without one)."""
        return 0

    @classmethod
    def fewest_evaluations(cls, params: Any) -> dict[str, Any]:
        """Infer settings that run the same code with the fewest network evaluations per
        image (a rehearsal's cut, as 2 optimizer steps are of training; its cost model
        scales the measured time by :meth:`nfe`). Empty where nothing can be cut."""
        return {}

    @classmethod
    def needs_train_scores(cls, params: Any) -> bool:
        """True where the score tier standardises by train-split statistics: the infer
        job shared by a group of variants then scores the train split too."""
        return False

    @classmethod
    def reconstructs_by_strength(cls, params: Any) -> bool:
        """True where the model reconstructs test images from a partial noising set by an
        infer setting ``strength`` (:meth:`AnomalyModel.reconstruct_images`): the report
        then shows reconstructions at increasing strength (paper 000's Figure 4.1)."""
        return False

    @classmethod
    def score(cls, params: Any, outputs: Outputs) -> Scored:
        """The score tier: image scores and maps of the test split from stored outputs."""
        raise NotImplementedError(f"{cls.__name__} defines no score tier")

    @classmethod
    def model_class(cls) -> type[AnomalyModel]:
        model = cls.model
        if isinstance(model, str):
            module, _, name = model.partition(":")
            model = getattr(importlib.import_module(module), name)
        model.kind = cls
        return model


class AnomalyModel(ABC):
    """The trainable side of a kind: built from its params, the runtime and the
    resolved upstream artefacts."""

    #: Set by the registry to the kind that owns this model class.
    kind: ClassVar[type[MethodKind]]

    def __init__(self, params: Any, runtime: Runtime, artefacts: Artefacts | None = None):
        self.params = params
        self.runtime = runtime
        self.artefacts = artefacts or {}

    @abstractmethod
    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        """Train on the normal images of manifest rows ``train``; return the loss curve
        (at least ``step`` and ``loss``). Long trainings go through
        :class:`diffad.training.Trainer` with ``session``, which resumes after a kill."""

    @abstractmethod
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        """Every detector for a batch: ``images`` (B, 3, H, W) RGB in [0, 1] on the
        runtime's device, ``rows`` their manifest rows (category, captions...)."""

    def eval(self) -> None:
        """Put the networks in inference mode (dropout, normalisation statistics); called
        by :meth:`infer` before the first batch. Kinds whose networks train override it."""
        return None

    def infer(self, rows: pd.DataFrame) -> Iterator[Prediction]:
        """Predictions for ``rows`` in order, ``params.infer_batch_size`` images at a time,
        with ms per image. The first image runs once untimed first: lazy initialisation
        and allocator warm-up are not latency (one image, so that a big batch is not
        computed twice)."""
        from diffad.data.loader import image_batches
        from diffad.device import synchronize

        self.eval()
        batch_size = self.params.infer_batch_size
        device = self.runtime.device
        warm = False
        batches = image_batches(rows["image_path"].tolist(), self.runtime, batch_size,
                                desc="inference")
        for start, images in zip(range(0, len(rows), batch_size), batches, strict=True):
            images = images.to(device)
            batch_rows = rows.iloc[start:start + batch_size]
            if not warm:
                self.predict(images[:1], batch_rows.iloc[:1])
                warm = True
            synchronize(device)
            begin = time.perf_counter()
            prediction = self.predict(images, batch_rows)
            synchronize(device)
            prediction.latency_ms = 1000 * (time.perf_counter() - begin) / len(images)
            yield prediction

    def reconstruct_images(self, images: torch.Tensor, rows: pd.DataFrame) -> torch.Tensor:
        """Reconstructions of (B, 3, H, W) images in [0, 1], at their size, with the
        current ``params`` (their ``strength``): the capability that
        :meth:`MethodKind.reconstructs_by_strength` declares."""
        raise NotImplementedError(f"{self.kind.kind} does not reconstruct images")

    def at_strength(self, strength: float) -> None:
        """Reconstruct from ``strength`` from now on (the strength figure's sweep); the
        parameters are validated again, as a config entry would be."""
        if not self.kind.reconstructs_by_strength(self.params):
            raise NotImplementedError(f"{self.kind.kind} does not reconstruct by strength")
        self.params = self.params.updated(strength=strength)

    @abstractmethod
    def save_networks(self, folder: Path) -> None:
        """Write the trained state into ``folder`` (safetensors, atomically)."""

    @abstractmethod
    def load_networks(self, folder: Path) -> None:
        """Restore the state written by :meth:`save_networks`."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Parameters of the networks used at inference."""

    def save_pretrained(self, folder: str | Path) -> None:
        """The model folder: ``config.json`` (kind, parameters) and the networks. The
        caller writes ``metadata.json`` last."""
        from diffad.io import write_json

        folder = Path(folder)
        self.save_networks(folder)
        # The train tier is what the folder is; infer and run settings come from the job.
        config = {"kind": self.kind.kind, "params": self.params.values("train")}
        if self.kind.plugin:
            config["plugin"] = self.kind.plugin
        write_json(config, folder / MODEL_CONFIG)


def read_model_config(folder: str | Path) -> dict[str, Any]:
    """The kind and parameters a model folder was made with."""
    return json.loads((Path(folder) / MODEL_CONFIG).read_text())


__all__ = ["ALL_CATEGORIES", "STATISTICS", "AnomalyModel", "Artefact", "Artefacts", "MODEL_CONFIG",
           "MODEL_MARKER", "MethodKind", "Prediction", "Requirements", "Scored",
           "read_model_config"]
