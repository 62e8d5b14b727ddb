"""Settings models validated where they enter, with the config path of a bad key.

Every block of the config that the library reads as parameters (a method
variant, a captioner, an autoencoder) is a strict pydantic model whose fields
declare their bounds beside their defaults; :func:`parse_params` validates a
config entry into one and turns pydantic's errors into one
:class:`~diffad.errors.ConfigError` line per bad key, e.g.
``methods.pc.coreset_ratio: must be > 0, got -0.5``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from diffad.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def parse_params(params_cls: type[Model], values: dict[str, Any], where: str) -> Model:
    """Validate ``values`` into ``params_cls``; a bad entry raises ConfigError naming
    ``where.key`` (every bad key, one per line)."""
    try:
        return params_cls(**values)
    except ValidationError as err:
        raise ConfigError(_describe(err, params_cls, where)) from None


def _describe(err: ValidationError, params_cls: type[BaseModel], where: str) -> str:
    unknown = sorted(str(e["loc"][0]) for e in err.errors() if e["type"] == "extra_forbidden")
    lines = []
    if unknown:
        lines.append(f"{where}: unknown parameter(s) {unknown}; known: "
                     f"{sorted(params_cls.model_fields)}")
    for error in err.errors():
        if error["type"] == "extra_forbidden":
            continue
        key = ".".join(str(part) for part in error["loc"])
        lines.append(f"{where}{'.' + key if key else ''}: {_message(error)}")
    return "\n".join(lines)


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}


def _message(error: dict[str, Any]) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        shown = f"{bound:g}" if isinstance(bound, float) else bound
        return f"must be {_BOUNDS[kind]} {shown}, got {value!r}"
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx.get('expected')}"
    if kind.endswith("_type"):
        expected = {"int": "int", "float": "float", "bool": "bool", "string": "str",
                    "list": "list", "tuple": "list", "dict": "mapping"}.get(kind[:-5], kind[:-5])
        return f"expected {expected}, got {value!r}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}, got {value!r}"


__all__ = ["parse_params"]
