"""Method kinds register by name, the way timm registers models; variants resolve to params.

``resolve_method(name, cfg)`` turns one ``methods:`` entry of the config into
its full parameters (defaults filled in, bounds checked, the config path of
a bad key named). Keys every variant accepts besides its kind's parameters:

``kind``
    the registered kind (``patchcore``, ...)
``reference``
    the method name under which ``config/reference/*.csv`` lists published
    numbers for this variant (default: the variant's own name)
``per_category``
    ``{<category>: {<parameter>: <value>}}``: infer or score settings that
    differ by category (paper 002's T_d per class). A category's jobs see
    the variant's parameters with its overrides (:func:`for_category`).
``datasets``
    the datasets the variant runs on (default: every configured dataset), for
    settings a paper uses on some datasets only (paper 003's 100 epochs on
    Real-IAD and COCO-AD, its COCO-AD prompt).

A whole config's variants (grids, seeds, who shares whose jobs) are the
plan's business: :mod:`diffad.plan.variants`.

Kinds outside the package come from *plugins*: modules (a dotted name, or a
``.py`` file path) listed under the config's ``plugins:`` and imported by
:func:`load_plugins`; the resolved parameters carry the plugin's path so
that every job imports it too.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from diffad.errors import ConfigError
from diffad.methods.base import MethodKind
from diffad.methods.params import MethodParams, parse_params

_REGISTRY: dict[str, type[MethodKind]] = {}
_LOADING: list[str] = []  # the plugin being imported, while it is
COMMON_KEYS = ("kind", "reference", "plugin", "per_category", "datasets")


def register_method(cls: type[MethodKind]) -> type[MethodKind]:
    """Class decorator: make ``cls`` available as ``kind: <cls.kind>``."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"method kind '{cls.kind}' is registered twice")
    _REGISTRY[cls.kind] = cls
    if _LOADING:
        cls.plugin = _LOADING[-1]
    if not isinstance(cls.model, str):
        cls.model.kind = cls
    return cls


def load_plugins(plugins: list[str] | None) -> None:
    """Import each plugin (a module name, or a path to a ``.py`` file) once."""
    loaded = {cls.plugin for cls in _REGISTRY.values()}
    for plugin in plugins or ():
        if plugin in loaded:
            continue
        _LOADING.append(plugin)
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).resolve()
                if not path.is_file():
                    raise ConfigError(f"plugins: {plugin} not found")
                spec = importlib.util.spec_from_file_location(f"diffad_plugin_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(plugin)
        except ModuleNotFoundError as err:
            raise ConfigError(f"plugins: cannot import {plugin!r}: {err}") from None
        finally:
            _LOADING.pop()


def method_kinds() -> list[str]:
    return sorted(_REGISTRY)


def method_kind(kind: str, where: str = "methods") -> type[MethodKind]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConfigError(
            f"{where}.kind: unknown method kind '{kind}'; known kinds: {method_kinds()} "
            f"(a kind of your own: list its module under `plugins:`)"
        ) from None


def kind_of(resolved: dict[str, Any]) -> type[MethodKind]:
    """The kind of a resolved variant, importing its plugin first where it has one."""
    if resolved.get("plugin"):
        load_plugins([resolved["plugin"]])
    return method_kind(resolved["kind"])


def resolve_method(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Full parameters of variant ``name``: kind, reference name and every parameter."""
    where = f"methods.{name}"
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ConfigError(f"{where}: needs a 'kind' (one of {method_kinds()})")
    cls = method_kind(cfg["kind"], where)
    values = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    params = parse_params(cls.Params, values, where)
    resolved = {"kind": cls.kind, "reference": cfg.get("reference", name), **params.values()}
    if cls.plugin:
        resolved["plugin"] = cls.plugin
    overrides = _per_category(cls, values, cfg.get("per_category"), where)
    if overrides:
        resolved["per_category"] = overrides
    datasets = cfg.get("datasets")
    if datasets is not None:
        if (not isinstance(datasets, list) or not datasets
                or not all(isinstance(d, str) for d in datasets)):
            raise ConfigError(f"{where}.datasets: expected a non-empty list of dataset names, "
                              f"got {datasets!r}")
        resolved["datasets"] = list(datasets)
    return resolved


def runs_on(resolved: dict[str, Any], dataset: str) -> bool:
    """Whether a resolved variant runs on ``dataset`` (its ``datasets`` list, if any)."""
    return resolved.get("datasets") is None or dataset in resolved["datasets"]


def _per_category(cls: type[MethodKind], values: dict[str, Any], overrides: Any,
                  where: str) -> dict[str, dict[str, Any]]:
    """Validated ``per_category`` overrides: infer and score settings only, each
    category's full set of parameters valid."""
    if overrides is None:
        return {}
    where = f"{where}.per_category"
    if not isinstance(overrides, dict) or not all(isinstance(v, dict)
                                                  for v in overrides.values()):
        raise ConfigError(f"{where}: expected {{category: {{parameter: value}}}}, "
                          f"got {overrides!r}")
    out = {}
    for category, override in overrides.items():
        shared = [k for k in override if k in cls.Params.model_fields
                  and cls.Params.tier_of(k) == "train"]
        if shared:
            raise ConfigError(f"{where}.{category}: {shared} shape the trained model and "
                              "cannot differ by category; make a variant instead")
        params = parse_params(cls.Params, {**values, **override}, f"{where}.{category}")
        out[str(category)] = {k: params.values()[k] for k in override}
    return out


def for_category(resolved: dict[str, Any], category: str) -> dict[str, Any]:
    """A resolved variant as the jobs of ``category`` see it: its overrides applied."""
    out = {k: v for k, v in resolved.items() if k != "per_category"}
    out.update(resolved.get("per_category", {}).get(category, {}))
    return out


def params_of(resolved: dict[str, Any]) -> MethodParams:
    """The kind's ``Params`` object of a resolved variant."""
    cls = kind_of(resolved)
    return cls.Params(**{k: v for k, v in resolved.items() if k not in COMMON_KEYS})


def tier_values(resolved: dict[str, Any], *tiers: str) -> dict[str, Any]:
    """The kind and the parameters of ``tiers`` of a resolved variant (every tier without
    ``tiers``), with its ``per_category`` overrides of those tiers."""
    params = params_of(resolved)
    out = {"kind": resolved["kind"], **params.values(*tiers)}
    if resolved.get("plugin"):
        out["plugin"] = resolved["plugin"]
    names = set(type(params).names(*tiers)) if tiers else set(type(params).model_fields)
    overrides = {category: {k: v for k, v in override.items() if k in names}
                 for category, override in resolved.get("per_category", {}).items()}
    overrides = {category: o for category, o in overrides.items() if o}
    if overrides:
        out["per_category"] = overrides
    return out


