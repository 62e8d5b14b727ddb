"""Method kinds register by name, the way timm registers models.

``resolve_method(name, cfg)`` turns one ``methods:`` entry of the config into
its full parameters (defaults filled in, unknown keys and wrong types
rejected with the config path named). Keys every kind accepts:

``kind``
    the registered kind (``patchcore``, ...)
``reference``
    the method name under which ``config/reference/*.csv`` lists published
    numbers for this variant (default: the variant's own name)
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from diffad.errors import ConfigError
from diffad.methods.base import AnomalyMethod, Runtime, check_params

_REGISTRY: dict[str, type[AnomalyMethod]] = {}
COMMON_KEYS = ("kind", "reference")


def register_method(cls: type[AnomalyMethod]) -> type[AnomalyMethod]:
    """Class decorator: make ``cls`` available as ``kind: <cls.kind>``."""
    if cls.kind in _REGISTRY:
        raise ValueError(f"method kind '{cls.kind}' is registered twice")
    _REGISTRY[cls.kind] = cls
    return cls


def method_kinds() -> list[str]:
    return sorted(_REGISTRY)


def method_class(kind: str, where: str = "methods") -> type[AnomalyMethod]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConfigError(
            f"{where}.kind: unknown method kind '{kind}'; known kinds: {method_kinds()}"
        ) from None


def resolve_method(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Full parameters of variant ``name``: its kind, reference name and every hyperparameter."""
    where = f"methods.{name}"
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ConfigError(f"{where}: needs a 'kind' (one of {method_kinds()})")
    cls = method_class(cfg["kind"], where)
    values = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    params = check_params(cls.Params, values, where)
    return {
        "kind": cfg["kind"],
        "reference": cfg.get("reference", name),
        **dataclasses.asdict(params),
    }


def build_method(resolved: dict[str, Any], runtime: Runtime) -> AnomalyMethod:
    """Instantiate the method from ``resolve_method``'s output."""
    cls = method_class(resolved["kind"])
    values = {k: v for k, v in resolved.items() if k not in COMMON_KEYS}
    return cls(cls.Params(**values), runtime)


def training_params(resolved: dict[str, Any]) -> dict[str, Any]:
    """The parameters that determine the trained model: all but the inference-only ones."""
    cls = method_class(resolved["kind"])
    return {k: v for k, v in resolved.items()
            if k != "reference" and k not in cls.inference_params}


def training_variants(resolved: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Map each variant to the first variant (config order) with the same training
    parameters, whose model it uses: a grid over inference settings trains once."""
    owners: dict[str, str] = {}
    out = {}
    for name, params in resolved.items():
        key = repr(sorted(training_params(params).items()))
        out[name] = owners.setdefault(key, name)
    return out


def grid_points(grids: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per ``method_grids`` entry, its variants: name -> the varied values of that point.

    Each entry is ``{name: "li_s{steps}", base: {kind: ..., ...}, vary: {steps: [2, 3]}}``;
    the points are the product of the ``vary`` lists and ``name`` is formatted with a
    point's values. Points the kind declares not applicable (e.g. a reconstruction that
    would start before its first step, a "-" cell of the paper's grid) are left out.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    seen: set[str] = set()
    for grid, spec in grids.items():
        where = f"method_grids.{grid}"
        keys = list(spec["vary"])
        cls = method_class(spec["base"].get("kind"), f"{where}.base")
        out[grid] = {}
        for values in itertools.product(*(spec["vary"][k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            try:
                name = spec["name"].format(**point)
            except KeyError as err:
                raise ConfigError(f"{where}.name: {err} is not a varied parameter") from None
            if name in seen:
                raise ConfigError(f"{where}.name: '{name}' is produced twice; "
                                  "name every varied parameter in it")
            seen.add(name)
            if cls.applicable(resolve_method(name, {**spec["base"], **point})):
                out[grid][name] = point
    return out


def expand_method_grids(
    grids: dict[str, dict[str, Any]],
    points: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The config entry of every variant of every grid, from :func:`grid_points`'s
    ``points`` (computed here when not given)."""
    points = grid_points(grids) if points is None else points
    return {name: {**grids[grid]["base"], **point}
            for grid, variants in points.items() for name, point in variants.items()}


def weight_names(resolved: dict[str, Any]) -> list[str]:
    """Pretrained backbones a resolved variant needs in the weights cache."""
    cls = method_class(resolved["kind"])
    values = {k: v for k, v in resolved.items() if k not in COMMON_KEYS}
    return cls.weight_names(cls.Params(**values))
