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

:func:`method_set` resolves a whole config: the variants of ``methods`` and
of ``method_grids``, which variant's model and inference each one reuses
(``trained_by``, ``inferred_by``), and the checks that span variants.

Kinds outside the package come from *plugins*: modules (a dotted name, or a
``.py`` file path) listed under the config's ``plugins:`` and imported by
:func:`load_plugins`; the resolved parameters carry the plugin's path so
that every job imports it too.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffad.errors import ConfigError
from diffad.methods.base import MethodKind
from diffad.methods.params import MethodParams, parse_params

_REGISTRY: dict[str, type[MethodKind]] = {}
_PLUGIN_OF: dict[str, str] = {}  # kind -> the plugin that registered it
_LOADING: list[str] = []  # the plugin being imported, while it is
COMMON_KEYS = ("kind", "reference", "plugin", "per_category", "datasets")


def register_method(cls: type[MethodKind]) -> type[MethodKind]:
    """Class decorator: make ``cls`` available as ``kind: <cls.kind>``."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"method kind '{cls.kind}' is registered twice")
    _REGISTRY[cls.kind] = cls
    if _LOADING:
        _PLUGIN_OF[cls.kind] = _LOADING[-1]
    if not isinstance(cls.model, str):
        cls.model.kind = cls
    return cls


def load_plugins(plugins: list[str] | None) -> None:
    """Import each plugin (a module name, or a path to a ``.py`` file) once."""
    for plugin in plugins or ():
        if plugin in _PLUGIN_OF.values():
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


def plugin_of(kind: str) -> str | None:
    """The plugin that registered ``kind``; None for the kinds shipped with diffad."""
    return _PLUGIN_OF.get(kind)


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
    if cls.kind in _PLUGIN_OF:
        resolved["plugin"] = _PLUGIN_OF[cls.kind]
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
    """The kind and the parameters of ``tiers`` of a resolved variant (a job's params),
    with its ``per_category`` overrides of those tiers."""
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


def _owners(resolved: dict[str, dict[str, Any]], *tiers: str) -> dict[str, str]:
    """Each variant -> the first variant (config order) equal to it in ``tiers``."""
    owners: dict[str, str] = {}
    out = {}
    for name, params in resolved.items():
        key = repr(sorted(tier_values(params, *tiers).items()))
        out[name] = owners.setdefault(key, name)
    return out


def training_variants(resolved: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Variant -> the variant whose trained model it uses (equal train parameters)."""
    return _owners(resolved, "train")


def inference_variants(resolved: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Variant -> the variant whose inference outputs it scores (equal train and infer
    parameters): score-tier sweeps cost no inference."""
    return _owners(resolved, "train", "infer")


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
        cls = method_kind(spec["base"].get("kind"), f"{where}.base")
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
            resolved = resolve_method(name, _point_entry(spec["base"], point))
            if cls.applicable(params_of(resolved)):
                out[grid][name] = point
    return out


def expand_method_grids(
    grids: dict[str, dict[str, Any]],
    points: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The config entry of every variant of every grid, from :func:`grid_points`'s
    ``points`` (computed here when not given)."""
    points = grid_points(grids) if points is None else points
    return {name: _point_entry(grids[grid]["base"], point)
            for grid, variants in points.items() for name, point in variants.items()}


def _point_entry(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """A grid point's config entry; a ``reference`` in ``base`` may name the point's
    values (``"li_sp_s{steps}"``): each point is compared with its own published row."""
    entry = {**base, **point}
    if isinstance(entry.get("reference"), str):
        entry["reference"] = entry["reference"].format(**point)
    return entry


def _expand_seeds(seeds: dict[str, list[int]],
                  resolved: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Replace each variant named in ``seeds`` by one run per seed, ``<variant>_seed<s>``
    (in place); returns variant -> its runs, which the tables show as mean ± sd."""
    groups = {}
    for name, given in seeds.items():
        where = f"seeds.{name}"
        values = [int(seed) for seed in given]  # `--config` passes "0" for 0
        if name not in resolved:
            raise ConfigError(f"{where}: '{name}' is not a configured variant")
        if len(set(values)) < len(values):
            raise ConfigError(f"{where}: the seeds must be distinct, got {values}")
        runs = {f"{name}_seed{seed}": {**resolved[name], "seed": seed} for seed in values}
        clashes = sorted(set(runs) & set(resolved))
        if clashes:
            raise ConfigError(f"{where}: its runs {clashes} clash with configured variants")
        del resolved[name]
        resolved.update(runs)
        groups[name] = list(runs)
    return groups


@dataclass
class MethodSet:
    """Every variant of a config, resolved, and who shares whose jobs."""

    resolved: dict[str, dict[str, Any]]  #: variant -> kind, reference and parameters
    grid_points: dict[str, dict[str, dict[str, Any]]]  #: grid -> variant -> varied values
    trained_by: dict[str, str]  #: variant -> the variant whose model it uses
    inferred_by: dict[str, str]  #: variant -> the variant whose infer outputs it scores
    #: inference owner -> whether its job scores the train split too (some variant
    #: scoring its outputs standardises by train statistics)
    train_scores: dict[str, bool]
    #: variant named under ``seeds:`` -> its runs, one per seed (the table's mean ± sd)
    seed_groups: dict[str, list[str]]
    #: the variants under ``methods:`` (a seeded one by its first run): heatmaps, chart
    shown: list[str]


#: Folders under results/models/ that hold upstream artefacts, not variants' models.
RESERVED_NAMES = ("autoencoder",)


def check_datasets(found: MethodSet, datasets: list[str]) -> None:
    """Every ``datasets`` list of a variant names configured datasets."""
    for name, resolved in found.resolved.items():
        unknown = sorted(set(resolved.get("datasets") or ()) - set(datasets))
        if unknown:
            raise ConfigError(f"methods.{name}.datasets: {unknown} are not configured "
                              f"datasets; known: {sorted(datasets)}")


def check_artefacts(found: MethodSet, known: dict[str, Any]) -> None:
    """Every artefact a variant declares names a configured entry of its stage
    (``known``: stage -> names, e.g. ``{"captions": captioners, "autoencoder": ...}``;
    ``test_captions`` are made by the captioners too).

    Raises:
        ConfigError: naming the variant's key and the entries that exist.
    """
    stages = {"test_captions": "captions"}
    for name, resolved in found.resolved.items():
        if name in RESERVED_NAMES:
            raise ConfigError(f"methods.{name}: '{name}' names a folder of upstream artefacts "
                              "(results/models/autoencoder); call the variant otherwise")
        needs = kind_of(resolved).requirements(params_of(resolved))
        for artefact in needs.artefacts + needs.infer_artefacts:
            stage = stages.get(artefact.stage, artefact.stage)
            entries = known.get(stage)
            if entries is not None and artefact.name not in entries:
                key = "captioner" if stage == "captions" else stage
                block = "captioners" if stage == "captions" else f"{stage}s"
                raise ConfigError(f"methods.{name}.{key}: {artefact.name!r} is not a configured "
                                  f"entry of `{block}:`; known: {sorted(entries)}")


def method_set(methods: dict[str, Any], grids: dict[str, Any] | None = None,
               best_of: dict[str, list[str]] | None = None,
               seeds: dict[str, list[int]] | None = None) -> MethodSet:
    """Resolve the ``methods``, ``method_grids``, ``best_of`` and ``seeds`` blocks of a
    config.

    Raises:
        ConfigError: a bad variant (its key named), a grid variant that clashes with a
            name in ``methods``, or a ``best_of`` or ``seeds`` entry naming an unknown
            variant.
    """
    points = grid_points(grids or {})
    generated = expand_method_grids(grids or {}, points)
    clashes = sorted(set(generated) & set(methods))
    if clashes:
        raise ConfigError(f"method_grids produce variants also named in methods: {clashes}")
    resolved = {name: resolve_method(name, cfg) for name, cfg in {**methods, **generated}.items()}
    seed_groups = _expand_seeds(seeds or {}, resolved)
    for group, variants in (best_of or {}).items():
        seeded = [v for v in variants if v in seed_groups]
        if seeded:
            raise ConfigError(f"best_of.{group}: {seeded} run once per seed (`seeds:`); "
                              f"name their runs instead ({seed_groups[seeded[0]]})")
        unknown = [v for v in variants if v not in resolved]
        if unknown:
            raise ConfigError(f"best_of.{group} names variants that are not configured: "
                              f"{unknown}")
    inferred_by = inference_variants(resolved)
    train_scores = dict.fromkeys(set(inferred_by.values()), False)
    for name, owner in inferred_by.items():
        train_scores[owner] |= kind_of(resolved[name]).needs_train_scores(
            params_of(resolved[name]))
    shown = [seed_groups[name][0] if name in seed_groups else name for name in methods]
    return MethodSet(resolved, points, training_variants(resolved), inferred_by, train_scores,
                     seed_groups, shown)
