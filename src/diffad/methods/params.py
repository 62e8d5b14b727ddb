"""Method hyperparameters: pydantic models whose fields declare their tier and bounds once.

A method kind's ``Params`` subclasses :class:`MethodParams`; each field is
made with :func:`~diffad.tiers.train`, :func:`~diffad.tiers.infer`,
:func:`~diffad.tiers.score` or :func:`~diffad.tiers.run`, which say which job
the value reaches (:mod:`diffad.tiers`). A field declared without a tier fails
when its class is defined, naming the class and the field. Kinds that train a
network on the shared trainer also inherit
:class:`~diffad.training.TrainerParams` (epochs, batch size, ... declared once).

Bounds and choices sit beside the default (``train(0.1, gt=0, le=1)``,
``Literal[...]``), so a bad value fails when the DAG is built, with the
config path of the key in the message::

    >>> from diffad.methods import resolve_method
    >>> resolve_method("pc", {"kind": "patchcore", "coreset_ratio": -0.5})  # doctest: +SKIP
    ConfigError: methods.pc.coreset_ratio: must be > 0, got -0.5
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from diffad.settings import (
    Backbone,
    DiffusersWeights,
    OpenClipWeights,
    Weights,
    parse_params,
)
from diffad.tiers import Tier, infer, run, score, tier_of_field, train

#: Evaluation protocols (:mod:`diffad.metrics.protocols`): ours, and each paper code's own.
Protocol = Literal["unified", "diad", "inversionad"]


def check_unet_schedule(params: Any) -> None:
    """Checks of the kinds that train a UNet2DModel (:mod:`diffad.models.unet`) on a
    linear DDPM schedule: ``attention_levels``, ``block_out_channels``, the betas."""
    levels = len(params.block_out_channels)
    if params.attention_levels > levels:
        raise ValueError(f"attention_levels: {params.attention_levels} exceeds the "
                         f"{levels} levels of block_out_channels")
    if params.beta_start >= params.beta_end:
        raise ValueError(f"beta_start ({params.beta_start}) must be below beta_end "
                         f"({params.beta_end})")


class MethodParams(BaseModel):
    """Base of every kind's parameters. Strict: ``2.5`` is no int, ``"1"`` no number."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              validate_default=True)

    seed: int | None = train(
        None, "this variant's seed (None: `runtime.seed`); variants differing only in it are "
        "repeated runs, which a `seeds:` table group shows as mean ± standard deviation",
        ge=0)
    protocol: Protocol = score(
        "unified", "evaluation protocol beside ours: `unified` (exact AUPRO to FPR 0.3, AUROC "
        "never flipped) or a paper code's own (`diad`, `inversionad`); the metrics row holds "
        "both")
    infer_batch_size: int = run(
        8, "test images per inference batch (GPU memory): never changes a score", ge=1)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # A field without a tier would be in no job's parameters: fail where it is declared.
        untiered = [name for name, field in cls.model_fields.items()
                    if tier_of_field(field) is None]
        if untiered:
            raise TypeError(f"{cls.__qualname__}.{untiered[0]}: declare it with train(), "
                            "infer(), score() or run() (diffad.tiers), which say which job "
                            "it reaches")

    @classmethod
    def tier_of(cls, name: str) -> Tier:
        return tier_of_field(cls.model_fields[name])  # type: ignore[return-value]

    @classmethod
    def names(cls, *tiers: Tier) -> list[str]:
        """Field names of the given tiers, in declaration order."""
        return [name for name in cls.model_fields if cls.tier_of(name) in tiers]

    def values(self, *tiers: Tier) -> dict[str, Any]:
        """The values of the given tiers (every field without ``tiers``), JSON-ready."""
        data = self.model_dump(mode="json")
        wanted = type(self).names(*tiers) if tiers else list(data)
        return {name: data[name] for name in wanted}

    def updated(self, **changes: Any) -> MethodParams:
        """A copy with ``changes``, validated like a config entry (bounds, consistency)."""
        return type(self).model_validate({**self.model_dump(), **changes})


__all__ = ["Backbone", "DiffusersWeights", "MethodParams", "OpenClipWeights", "Protocol",
           "Tier", "Weights", "check_unet_schedule", "infer", "parse_params", "run", "score",
           "train"]
