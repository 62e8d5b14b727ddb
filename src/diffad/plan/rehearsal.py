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
  numbers (steps, strength, epochs, seeds) scale a cost, they choose no code;
  each on one dataset per image size (:func:`rehearsal_datasets`), every
  dataset read at least once; variants whose training (or inference) runs the
  same code share one job (:func:`share_jobs`); which captions or autoencoder a
  variant reads is data to its code, and each captioner model and autoencoder
  recipe of the full run is made once (:func:`rehearsal_artefacts`).

Everything else is the reproduction's own: resolutions, samplers, T_d,
batch sizes up to ``max_batch``, dtypes. The outputs go under their own
results root (``results/rehearsal/``) and the tables are titled
``<experiment>.rehearsal``: a rehearsal's numbers can never be mistaken for,
or overwrite, a real run's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from diffad.data import ALL_CATEGORIES
from diffad.data.layouts import PUBLISHED
from diffad.errors import ConfigError
from diffad.methods import Artefact, kind_of, params_of
from diffad.plan.variants import MethodSet
from diffad.training import TrainerParams

if TYPE_CHECKING:
    from diffad.captions import CaptionerParams
    from diffad.plan.plan import Plan


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


def _categories(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if _categorical(v)}


def _artefacts(resolved: dict[str, Any]) -> tuple[Artefact, ...]:
    needs = kind_of(resolved).requirements(params_of(resolved))
    return needs.artefacts + needs.infer_artefacts


def code_path(resolved: dict[str, Any]) -> tuple:
    """What code a variant runs: its kind and its categorical settings of every tier but
    run. Numbers scale the cost of the same code; the datasets a variant runs on are read
    by the same code (:func:`rehearsal_datasets` keeps each dataset read once); a setting
    that names an upstream artefact (a captioner, an autoencoder) says only that the
    variant reads one: which captions or autoencoder weights it reads is data to the same
    code, and the artefact's own code is rehearsed apart (:func:`artefact_path`)."""
    params = params_of(resolved)
    values = _categories(params.values("train", "infer", "score"))
    for artefact in _artefacts(resolved):
        if artefact.setting in values:
            values[artefact.setting] = f"<{artefact.stage}>"
    return resolved["kind"], repr(sorted(values.items()))


def artefact_path(stage: str, name: str, captioners: Mapping[str, CaptionerParams],
                  autoencoders: Mapping[str, Any]) -> tuple:
    """What code makes an artefact: a captioner's model and how it is asked (two prompts
    or decoding lengths are one path), an autoencoder's categorical settings (pretrained
    or finetuned, its weights and losses)."""
    if stage == "autoencoder":
        return stage, repr(sorted(_categories(autoencoders[name].model_dump()).items()))
    model = captioners[name]
    return "captions", model.family, model.weights


def rehearsal_artefacts(full: Plan, methods: dict[str, dict[str, Any]]
                        ) -> list[tuple[str, str, str, str]]:
    """(stage, name, dataset, unit) of each artefact code path of the full run
    (:func:`artefact_path`) that none of the rehearsed ``methods`` reads, as an extra
    target of the rehearsal: made once, on a dataset the rehearsed variants do not read
    where the full run makes it for one (so that each dataset's code is read), else on
    the first it makes it for."""
    def path(a: Artefact) -> tuple:
        return artefact_path(a.stage, a.name, full.captioners, full.autoencoders)

    made = {path(a) for entry in methods.values() for a in _artefacts(entry)}
    read = {d for entry in methods.values() for d in entry["datasets"]}
    candidates: dict[tuple, list[tuple[str, str, str, str]]] = {}
    for resolved in full.variants.resolved.values():
        per_dataset = kind_of(resolved).per_dataset(params_of(resolved))
        for a in _artefacts(resolved):
            if path(a) in made:
                continue
            # Caption tables are per category, whatever the model's unit.
            stage = "captions" if a.stage == "test_captions" else a.stage
            for dataset in resolved.get("datasets") or full.datasets:
                unit = ALL_CATEGORIES if per_dataset else full.full_categories[dataset][0]
                candidates.setdefault(path(a), []).append((stage, a.name, dataset, unit))
    out = []
    for options in candidates.values():
        chosen = next((o for o in options if o[2] not in read), options[0])
        read.add(chosen[2])
        out.append(chosen)
    return out


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


def _leaders(entries: dict[str, dict[str, Any]], *tiers: str) -> dict[str, str]:
    """Each rehearsed variant -> the first (config order) of the same kind and the same
    categorical settings of ``tiers``: the one whose job it can share."""
    first: dict[str, str] = {}
    out = {}
    for name, entry in entries.items():
        key = repr((entry["kind"], sorted(_categories(params_of(entry).values(*tiers))
                                          .items())))
        out[name] = first.setdefault(key, name)
    return out


def share_jobs(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rehearsed variants with the numbers of their train (and infer) tier set to their
    leader's (:func:`_leaders`), so that variants running the same training code share one
    train job, and those differing in score settings only one inference (the numbers only
    scale the cost, which the cost table takes from the full run)."""
    out = dict(entries)
    for tiers in (("train",), ("train", "infer")):
        for name, leader in _leaders(out, *tiers).items():
            if leader == name:
                continue
            numbers = {k: v for k, v in params_of(out[leader]).values(tiers[-1]).items()
                       if not _categorical(v)}
            shared = {**out[name], **numbers}
            try:
                params_of(shared)
            except (ConfigError, ValueError):  # the leader's numbers do not fit its settings
                continue
            out[name] = shared
    return out


def rehearsal_datasets(variants: MethodSet, chosen: dict[str, str],
                       image_sizes: dict[str, int]) -> dict[str, list[str]]:
    """Rehearsed variant -> the datasets it runs on: of the datasets of its code path, one
    per image size (a resolution is a cost: each is measured), the one its train leader
    already runs where it can share the training, else the one rehearsed least so far
    (:func:`read_every_dataset` then adds the datasets nothing reads)."""
    paths: dict[str, list[str]] = {}
    for name, rep in chosen.items():
        for dataset in variants.resolved[name].get("datasets") or image_sizes:
            if dataset not in paths.setdefault(rep, []):
                paths[rep].append(dataset)
    order = list(image_sizes)
    for rep in paths:
        paths[rep].sort(key=order.index)
    reps = {rep: variants.resolved[rep] for rep in paths}
    leaders = _leaders(reps, "train")
    uses = dict.fromkeys(image_sizes, 0)
    out: dict[str, list[str]] = {}
    for rep, candidates in paths.items():
        picked = []
        for size in dict.fromkeys(image_sizes[d] for d in candidates):
            same = [d for d in candidates if image_sizes[d] == size]
            shared = [d for d in same if d in out.get(leaders[rep], [])]
            picked.append(shared[0] if shared else min(same, key=lambda d: uses[d]))
            uses[picked[-1]] += 1
        out[rep] = picked
    return out


def read_every_dataset(keep: dict[str, list[str]], variants: MethodSet,
                       chosen: dict[str, str], artefacts: list[tuple[str, str, str, str]],
                       datasets: list[str]) -> dict[str, list[str]]:
    """``keep`` with each dataset that no rehearsed variant and no extra artefact reads
    added to the first rehearsed variant whose code path (``chosen``:
    :func:`representatives`) runs on it (each dataset's own code is read once)."""
    read = {d for ds in keep.values() for d in ds} | {a[2] for a in artefacts}
    out = {rep: list(ds) for rep, ds in keep.items()}
    for name, resolved in variants.resolved.items():
        for dataset in resolved.get("datasets") or datasets:
            if dataset not in read and chosen[name] in out:
                out[chosen[name]].append(dataset)
                read.add(dataset)
    return {rep: sorted(ds, key=datasets.index) for rep, ds in out.items()}


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


def rehearsal_config(config: dict[str, Any], full: Plan, settings: Rehearsal
                     ) -> dict[str, Any]:
    """The config of the rehearsal of ``config`` (see the module docstring); ``full`` is the
    real run's plan."""
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
        kept["categories"] = full.full_categories[name][:settings.categories]
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
    variants = full.variants
    artefacts: list[tuple[str, str, str, str]] = []
    if settings.variants == "all":
        keep = {n: list(r.get("datasets") or datasets) for n, r in variants.resolved.items()}
    else:
        chosen = representatives(variants)
        keep = rehearsal_datasets(variants, chosen, {d: full.image_size(d) for d in datasets})
        artefacts = rehearsal_artefacts(full, {n: {**variants.resolved[n], "datasets": on}
                                               for n, on in keep.items()})
        keep = read_every_dataset(keep, variants, chosen, artefacts, list(datasets))
    methods = {}
    for name, on in keep.items():
        entry = {k: v for k, v in variants.resolved[name].items() if k != "reference"}
        entry["datasets"] = on
        if issubclass(kind_of(entry).Params, TrainerParams):
            entry = cut_training(entry, settings)
        if settings.fewest_evaluations:
            entry = cut_inference(entry)
        methods[name] = entry
    out["methods"] = methods if settings.variants == "all" else share_jobs(methods)
    out["rehearsal_artefacts"] = [list(a) for a in artefacts]
    out["method_grids"], out["seeds"] = {}, {}
    out["best_of"] = {g: [v for v in vs if v in methods]
                      for g, vs in config.get("best_of", {}).items()}
    out["best_of"] = {g: vs for g, vs in out["best_of"].items() if vs}
    return out


__all__ = ["Rehearsal", "artefact_path", "code_path", "cut_inference", "cut_training",
           "read_every_dataset", "rehearsal_artefacts", "rehearsal_config",
           "rehearsal_datasets", "representatives", "share_jobs"]
