"""Method hyperparameters: pydantic models whose fields declare their tier and bounds once.

A method kind's ``Params`` subclasses :class:`MethodParams`; each field is
made with :func:`train`, :func:`infer` or :func:`score`, which say which job
the value reaches:

``train``
    shapes the trained model. Variants that differ in nothing else share
    one train job (a grid over sampling steps trains once).
``infer``
    changes what the trained network is asked (steps, strength, start
    timestep...). Variants that differ only in score settings share one
    infer job.
``score``
    turns the stored per-detector scores and maps into an image score and a
    map (detector weights, pooling, smoothing, the evaluation protocol). The
    evaluate rule applies them; they never rerun inference.

Bounds and choices sit beside the default (``train(0.1, gt=0, le=1)``,
``Literal[...]``), so a bad value fails when the DAG is built, with the
config path of the key in the message::

    >>> from diffad.methods import resolve_method
    >>> resolve_method("pc", {"kind": "patchcore", "coreset_ratio": -0.5})  # doctest: +SKIP
    ConfigError: methods.pc.coreset_ratio: must be > 0, got -0.5
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diffad.settings import (
    Backbone,
    DiffusersWeights,
    OpenClipWeights,
    Weights,
    parse_params,
)

Tier = Literal["train", "infer", "score"]
TIERS: tuple[Tier, ...] = ("train", "infer", "score")

#: Evaluation protocols (:mod:`diffad.metrics.protocols`): ours, and each paper code's own.
Protocol = Literal["unified", "diad", "inversionad"]


def _field(tier: Tier, default: Any, description: str | None, **bounds: Any) -> Any:
    return Field(default, description=description, json_schema_extra={"tier": tier}, **bounds)


def train(default: Any, description: str | None = None, **bounds: Any) -> Any:
    """A parameter that shapes the trained model (``pydantic.Field`` bounds allowed)."""
    return _field("train", default, description, **bounds)


def infer(default: Any, description: str | None = None, **bounds: Any) -> Any:
    """A parameter of inference only: variants differing in it share one trained model."""
    return _field("infer", default, description, **bounds)


def score(default: Any, description: str | None = None, **bounds: Any) -> Any:
    """A parameter of the score tier: applied by evaluate to the stored outputs."""
    return _field("score", default, description, **bounds)


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

    @classmethod
    def tier_of(cls, name: str) -> Tier:
        extra = cls.model_fields[name].json_schema_extra
        return extra["tier"]  # type: ignore[index]

    @classmethod
    def names(cls, *tiers: Tier) -> list[str]:
        """Field names of the given tiers, in declaration order."""
        return [name for name in cls.model_fields if cls.tier_of(name) in tiers]

    def values(self, *tiers: Tier) -> dict[str, Any]:
        """The values of the given tiers (every field without ``tiers``), JSON-ready."""
        data = self.model_dump(mode="json")
        wanted = type(self).names(*tiers) if tiers else list(data)
        return {name: data[name] for name in wanted}


__all__ = ["Backbone", "DiffusersWeights", "MethodParams", "OpenClipWeights", "Protocol",
           "TIERS", "Tier", "Weights", "check_unet_schedule", "infer", "parse_params", "score",
           "train"]
