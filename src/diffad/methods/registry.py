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


def weight_names(resolved: dict[str, Any]) -> list[str]:
    """Pretrained backbones a resolved variant needs in the weights cache."""
    cls = method_class(resolved["kind"])
    values = {k: v for k, v in resolved.items() if k not in COMMON_KEYS}
    return cls.weight_names(cls.Params(**values))
