"""A rehearsal of a reproduction: its own DAG at real sizes on a few images, in minutes.

``--config rehearsal=true`` (or a ``rehearsal:`` block, :class:`Rehearsal`)
turns any experiment config into its rehearsal (:func:`rehearsal_config`):

- each dataset becomes :func:`~diffad.data.layouts.write_layout`'s folder in
  the dataset's own published layout at its real image sizes, written by the
  ``download`` rule (``train_images`` normal train images, ``test_images``
  test images half anomalous, the first ``categories`` categories of each
  dataset), and read by the same dataset code as a real run;
- each pretrained source becomes its real architecture with seeded random
  weights (:mod:`diffad.weights.rehearsal`), in a cache of its own;
- each training stops after ``steps`` optimizer steps (the trainer's
  ``max_steps``); a configured batch larger than ``max_batch`` runs at
  ``max_batch`` and the cost table scales the step to the configured batch;
- each inference runs its kind's fewest network evaluations
  (:meth:`~diffad.methods.base.MethodKind.fewest_evaluations`: ESM from
  T_d = 1, img2img on a 10-step schedule...) unless ``fewest_evaluations`` is
  false; the cost table scales the measured time by the configured NFE;
- of the variants, one per distinct code path (:func:`code_path`): each kind
  with each distinct value of its categorical settings (choices, flags,
  names, architectures), the one that costs the fewest network evaluations;
  numbers (steps, strength, epochs, seeds) scale a cost, they choose no code.

Everything else is the reproduction's own: resolutions, samplers, T_d,
batch sizes up to ``max_batch``, dtypes. The outputs go under their own
results root (``results/rehearsal/``) and the tables are titled
``<experiment>.rehearsal``: a rehearsal's numbers can never be mistaken for,
or overwrite, a real run's.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

from diffad.data.layouts import PUBLISHED
from diffad.errors import ConfigError
from diffad.methods import kind_of, params_of
from diffad.plan.variants import MethodSet
from diffad.training import TrainerParams


@dataclass(frozen=True)
class Rehearsal:
    """The knobs of a rehearsal (the config's ``rehearsal:`` block)."""

    train_images: int = 4
    test_images: int = 4  #: half normal, half anomalous
    categories: int = 1  #: the first categories of each dataset
    steps: int = 2  #: optimizer steps of every training
    #: the largest batch run here (memory); a larger configured batch is scaled to
    max_batch: int = 16
    #: inference at the kind's fewest network evaluations (scaled back by NFE)
    fewest_evaluations: bool = True
    #: ``paths``: one variant per distinct code path; ``all``: every variant
    variants: str = "paths"
    results: str = "results/rehearsal"
    logs: str = "logs/rehearsal"

    @classmethod
    def of(cls, config: dict[str, Any]) -> Rehearsal | None:
        """The config's rehearsal settings, None for a real run."""
        value = config.get("rehearsal", False)
        if value in (False, None, "false"):
            return None
        if value in (True, "true"):  # `--config rehearsal=true` passes a string
            return cls()
        if not isinstance(value, dict):
            raise ConfigError(f"rehearsal: expected true, false or a mapping, got {value!r}")
        known = set(asdict(cls()))
        unknown = sorted(set(value) - known - {"enabled"})
        if unknown:
            raise ConfigError(f"rehearsal: unknown key(s) {unknown}; known: {sorted(known)}")
        if value.get("enabled") is False:
            return None
        return cls(**{k: v for k, v in value.items() if k != "enabled"})


def _categorical(value: Any) -> bool:
    # bool before int: a flag chooses code; lists are architectures or network choices.
    return isinstance(value, (bool, str, list, tuple, dict)) or value is None


def code_path(resolved: dict[str, Any]) -> tuple:
    """What code a variant runs: its kind and its categorical settings of every tier but
    run (numbers scale the cost of the same code)."""
    params = params_of(resolved)
    values = params.values("train", "infer", "score")
    return (resolved["kind"], tuple(sorted(resolved.get("datasets") or ())),
            repr(sorted((k, v) for k, v in values.items() if _categorical(v))))


def representatives(variants: MethodSet) -> dict[str, str]:
    """Variant -> the variant that rehearses its code path: of each path, the one with the
    fewest network evaluations per image (then the first in config order)."""
    groups: dict[tuple, list[str]] = {}
    for name, resolved in variants.resolved.items():
        groups.setdefault(code_path(resolved), []).append(name)
    out = {}
    for names in groups.values():
        cost = {n: kind_of(variants.resolved[n]).nfe(params_of(variants.resolved[n]))
                for n in names}
        chosen = min(names, key=lambda n: (cost[n], names.index(n)))
        out.update(dict.fromkeys(names, chosen))
    return out


def cut_training(entry: dict[str, Any], settings: Rehearsal) -> dict[str, Any]:
    """A variant's (or autoencoder's) entry trained for ``steps`` steps at a batch that fits."""
    entry = dict(entry)
    entry["max_steps"] = settings.steps
    if "batch_size" in entry and entry["batch_size"] > settings.max_batch:
        entry["batch_size"] = settings.max_batch
    return entry


def cut_inference(entry: dict[str, Any]) -> dict[str, Any]:
    """A variant's entry at its kind's fewest network evaluations per image (its
    ``per_category`` overrides of the same settings too)."""
    cut = kind_of(entry).fewest_evaluations(params_of(entry))
    if not cut:
        return entry
    out = {**entry, **cut}
    if "per_category" in out:
        out["per_category"] = {c: {**o, **{k: v for k, v in cut.items() if k in o}}
                               for c, o in out["per_category"].items()}
    try:
        params_of(out)
    except (ConfigError, ValueError):  # the cut would not run (e.g. no denoising step)
        return entry
    return out


def rehearsal_config(config: dict[str, Any], variants: MethodSet,
                     full_categories: dict[str, list[str]], settings: Rehearsal
                     ) -> dict[str, Any]:
    """The config of the rehearsal of ``config`` (see the module docstring); ``variants``
    and ``full_categories`` are the real run's."""
    out = copy.deepcopy(config)
    out["rehearsal"] = False  # the rehearsal's own plan is a plain one
    out["experiment"] = f"{config['experiment']}.rehearsal"
    out.pop("categories", None)
    datasets = {}
    for name, entry in config["datasets"].items():
        kept = {k: v for k, v in entry.items() if k not in ("download", "categories", "root",
                                                             "split_csv", "image_dir",
                                                             "json_dir")}
        kept["root"] = f"{settings.results}/datasets/{name}"
        kept["categories"] = full_categories[name][:settings.categories]
        if entry["kind"] == "synthetic":  # drawn by its manifests, at its own size
            good = max(1, settings.test_images // 2)
            kept["synthetic"] = {**entry.get("synthetic", {}), "n_train": settings.train_images,
                                 "n_test_good": good, "n_test_defect": 1}
        elif entry["kind"] in PUBLISHED:
            kept["rehearsal_layout"] = {"train_images": settings.train_images,
                                        "test_images": settings.test_images}
        else:
            raise ConfigError(f"datasets.{name}: a rehearsal writes a dataset in its published "
                              f"layout ({', '.join(sorted(PUBLISHED))}) or draws a synthetic "
                              f"one; kind {entry['kind']!r} has neither")
        datasets[name] = kept
    out["datasets"] = datasets
    chosen = representatives(variants)
    keep = [n for n in variants.resolved if settings.variants == "all" or chosen[n] == n]
    methods = {}
    for name in keep:
        entry = {k: v for k, v in variants.resolved[name].items() if k != "reference"}
        if issubclass(kind_of(entry).Params, TrainerParams):
            entry = cut_training(entry, settings)
        if settings.fewest_evaluations:
            entry = cut_inference(entry)
        methods[name] = entry
    out["methods"] = methods
    out["method_grids"], out["seeds"] = {}, {}
    out["best_of"] = {g: [v for v in vs if v in methods]
                      for g, vs in config.get("best_of", {}).items()}
    out["best_of"] = {g: vs for g, vs in out["best_of"].items() if vs}
    return out


__all__ = ["Rehearsal", "code_path", "cut_inference", "cut_training", "rehearsal_config",
           "representatives"]
