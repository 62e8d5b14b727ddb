"""A config's variants: method grids, repeated seeds, and which variants share jobs.

:func:`method_set` resolves the ``methods``, ``method_grids``, ``best_of`` and
``seeds`` blocks: every variant's full parameters
(:func:`~diffad.methods.resolve_method`), and which variant's model and
inference each one reuses, from the parameter tiers (:mod:`diffad.tiers`):
variants equal in their train tier share one train job (``trained_by``),
variants equal in train and infer tiers share one infer job (``inferred_by``).
Run-control settings are in neither key: they never split a job.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from diffad.errors import ConfigError
from diffad.methods import kind_of, method_kind, params_of, resolve_method, tier_values


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


__all__ = ["RESERVED_NAMES", "MethodSet", "check_artefacts", "check_datasets",
           "expand_method_grids", "grid_points", "inference_variants", "method_set",
           "training_variants"]
