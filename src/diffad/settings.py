"""Settings models validated where they enter, with the config path of a bad key.

Every block of the config that the library reads as parameters (a method
variant, a captioner, an autoencoder) is a strict pydantic model whose fields
declare their bounds beside their defaults; :func:`parse_params` validates a
config entry into one and turns pydantic's errors into one
:class:`~diffad.errors.ConfigError` line per bad key, e.g.
``methods.pc.coreset_ratio: must be > 0, got -0.5``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError

from diffad.errors import ConfigError
from diffad.weights import weight_source

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


def _weights_of(library: str | None) -> Any:
    def known(name: str) -> str:
        weight_source(name, library=library)  # a ConfigError naming the known sources
        return name

    return Annotated[str, AfterValidator(known)]


#: Fields naming a pretrained weights source (:mod:`diffad.weights`) read by one library
#: (``Backbone``: timm) or by any (``Weights``): an unknown name, or one of another
#: library, fails when the config is read, naming the key.
Backbone = _weights_of("timm")
DiffusersWeights = _weights_of("diffusers")
OpenClipWeights = _weights_of("open_clip")
TransformersWeights = _weights_of("transformers")
Weights = _weights_of(None)

#: Names of config entries that become folders and Snakemake wildcard values.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


def resolve_named(block: dict[str, Any] | None, builtins: dict[str, dict[str, Any]],
                  params_cls: type[Model], where: str) -> dict[str, Model]:
    """Named entries of a config block (``captioners:``, ``autoencoders:``) on top of
    built-ins, each validated into ``params_cls``.

    An entry may say ``base: <built-in>`` to start from that built-in's values; an
    entry named like a built-in replaces it. Raises ConfigError naming
    ``<where>.<name>[.<key>]`` for a bad name, an unknown base or a bad value.
    """
    if block is not None and not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping of name -> entry, got {block!r}")
    entries: dict[str, dict[str, Any]] = {name: dict(v) for name, v in builtins.items()}
    for name, entry in (block or {}).items():
        key = f"{where}.{name}"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ConfigError(f"{key}: a name may hold only letters, digits, '_', '.' and "
                              f"'-' (it names folders and wildcards)")
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a mapping of settings, got {entry!r}")
        values = dict(entry)
        base = values.pop("base", None)
        if base is not None:
            if base not in builtins:
                raise ConfigError(f"{key}.base: unknown built-in {base!r}; known: "
                                  f"{', '.join(builtins)}")
            values = {**builtins[base], **values}
        entries[name] = values
    return {name: parse_params(params_cls, values, f"{where}.{name}")
            for name, values in entries.items()}


__all__ = ["NAME_PATTERN", "Backbone", "DiffusersWeights", "OpenClipWeights",
           "TransformersWeights", "Weights", "parse_params", "resolve_named"]
