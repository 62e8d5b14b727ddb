"""Parameter tiers: which job a setting reaches, declared beside its default and bounds.

A field made with :func:`train`, :func:`infer`, :func:`score` or :func:`run`
carries its tier in its JSON-schema extra; the plan (:mod:`diffad.plan`) reads
the tiers to decide which jobs variants share and what reruns when a value
changes:

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
``run``
    how a job runs, not what it computes (checkpoint interval, log interval,
    images per inference batch): never part of a job's identity, so a change
    neither splits variants nor reruns anything.

Torch-free and below every package that declares settings (methods, the
trainer), so that both declare their fields the same way.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Tier = Literal["train", "infer", "score", "run"]


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


def run(default: Any, description: str | None = None, **bounds: Any) -> Any:
    """A run-control setting: how a job runs, never what it computes; no job reruns for it."""
    return _field("run", default, description, **bounds)


def tier_of_field(field: Any) -> Tier | None:
    """The tier a pydantic ``FieldInfo`` was declared with (None: declared without one)."""
    extra = field.json_schema_extra
    return extra.get("tier") if isinstance(extra, dict) else None


def without_run(settings: BaseModel) -> dict[str, Any]:
    """A settings model's values (JSON-ready) without its run-control fields: what a job
    that trains with them is, and what reruns it."""
    data = settings.model_dump(mode="json")
    return {name: data[name] for name, info in type(settings).model_fields.items()
            if tier_of_field(info) != "run"}


__all__ = ["Tier", "infer", "run", "score", "tier_of_field", "train", "without_run"]
