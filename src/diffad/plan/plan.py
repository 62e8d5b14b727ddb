"""The DAG's decisions for one config, in one object that needs no Snakemake process.

``Plan.from_config(config)`` (a config already validated against the JSON
schema, defaults filled) resolves the variants and the upstream entries and
answers every question the rules ask:

- the grid of (method, dataset, category) evaluated, and each dataset's
  categories (narrowed by the top-level ``categories`` filter);
- training units: the category ``all`` for a kind that trains one model per
  dataset, which trains on every category of the dataset;
- job sharing: the variant whose model (``trained_by``) and whose inference
  (``inferred_by``) a variant reuses;
- each job's inputs: manifests, weights, declared artefacts, model, outputs;
- each job's parameters: what reruns it when it changes (``params:`` of a
  rule, never a run-control setting) and all it runs with (:meth:`job_params`,
  read by the job itself);
- resources per rule with per-dataset overrides, and the targets and table
  names of the report.

rules/common.smk holds one-line adapters from wildcards to these methods;
the tests call them directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from diffad.autoencoder import AutoencoderParams, resolve_autoencoders
from diffad.captions import CaptionerParams, resolve_captioners
from diffad.data import ALL_CATEGORIES, CATEGORY_PATTERN, dataset_categories
from diffad.methods import (
    MethodKind,
    Requirements,
    for_category,
    kind_of,
    load_plugins,
    params_of,
    runs_on,
    tier_values,
)
from diffad.paths import Paths
from diffad.plan.rehearsal import Rehearsal, cut_training, rehearsal_config
from diffad.plan.resources import RESOURCE_KEYS, resource_of
from diffad.plan.variants import MethodSet, check_artefacts, check_datasets, method_set
from diffad.report.coverage import coverage_note, table_name
from diffad.tiers import without_run
from diffad.weights.rehearsal import use_rehearsal_sources

#: The formats of an experiment's tables.
TABLE_FORMATS = ("md", "csv", "tex", "html")
#: Stages of declared artefacts that the captioners make (``test_captions``: of the test
#: images).
_CAPTION_STAGES = ("captions", "test_captions")


@dataclass(frozen=True)
class Job:
    """All a train or infer job runs with, beside its input and output files."""

    params: dict[str, Any]  #: the variant's parameters of the job's tiers, run settings too
    runtime: dict[str, Any]  #: the config's ``runtime:`` block (device, seed, caches)
    image_size: int  #: the dataset's
    artefacts: dict[str, dict[str, list[str]]]  #: stage -> name -> what the model reads


@dataclass
class Plan:
    """Every decision of the DAG for one validated config (see the module docstring)."""

    config: dict[str, Any]
    paths: Paths
    variants: MethodSet
    captioners: dict[str, CaptionerParams]
    autoencoders: dict[str, AutoencoderParams]
    #: a rehearsal's settings (:mod:`.rehearsal`); None for a real run
    rehearsal: Rehearsal | None = None
    #: a rehearsal's real run: what its cost estimate scales to
    full: Plan | None = None
    _requirements: dict[tuple[str, str], Requirements] = field(default_factory=dict,
                                                                 repr=False)

    @classmethod
    def from_config(cls, config: dict[str, Any], paths: Paths | None = None) -> Plan:
        """Resolve ``config``: an unknown kind, a bad parameter, a variant naming an unknown
        captioner, autoencoder or dataset fails here with its config path in the message,
        before any job starts. With ``rehearsal`` set, the plan of its rehearsal
        (:func:`~diffad.plan.rehearsal.rehearsal_config`), which knows the real one."""
        settings = Rehearsal.of(config)
        if settings is None:
            return cls._resolve(config, paths)
        full = cls._resolve({**config, "rehearsal": False}, paths)
        rehearsed = rehearsal_config(config, full, settings)
        rehearsed["autoencoders"] = {
            name: cut_training(params.model_dump(mode="json"), settings)
            for name, params in full.autoencoders.items()}
        runtime = dict(config.get("runtime", {}))
        runtime["weights_dir"] = f"{full.paths.weights}/rehearsal"
        runtime.pop("cache_dir", None)
        # Untrained networks may diverge: a rehearsal records that, it is not a crash.
        runtime["nonfinite"] = "record"
        rehearsed["runtime"] = runtime
        plan = cls._resolve(rehearsed, Paths(results=settings.results, logs=settings.logs,
                                             weights=runtime["weights_dir"]))
        # Every source the rehearsal loads is its real architecture with random weights,
        # in this process and in every job (each builds its plan from the same config).
        use_rehearsal_sources([name for (name,) in plan.jobs()["fetch_weights"]])
        return replace(plan, rehearsal=settings, full=full)

    @classmethod
    def _resolve(cls, config: dict[str, Any], paths: Paths | None = None) -> Plan:
        load_plugins(config.get("plugins"))
        variants = method_set(config["methods"], config.get("method_grids"),
                              config.get("best_of"), config.get("seeds"))
        captioners = resolve_captioners(config.get("captioners"))
        autoencoders = resolve_autoencoders(config.get("autoencoders"))
        check_artefacts(variants, {"captions": captioners, "autoencoder": autoencoders})
        check_datasets(variants, list(config["datasets"]))
        runtime = config.get("runtime", {})
        paths = paths or Paths(weights=runtime.get("weights_dir", "resources/weights"))
        return cls(config, paths, variants, captioners, autoencoders)

    # ---------------------------------------------------------------- the grid

    @property
    def datasets(self) -> dict[str, dict[str, Any]]:
        return self.config["datasets"]

    @property
    def methods(self) -> dict[str, dict[str, Any]]:
        """Every variant, resolved: kind, reference name and parameters."""
        return self.variants.resolved

    @cached_property
    def full_categories(self) -> dict[str, list[str]]:
        """Each dataset's full category list (a folder dataset lists its folders)."""
        return {name: dataset_categories(name, cfg) for name, cfg in self.datasets.items()}

    def categories(self, dataset: str) -> list[str]:
        """The dataset's categories, narrowed by the optional top-level ``categories``."""
        wanted = self.config.get("categories")
        return [c for c in self.full_categories[dataset] if not wanted or c in wanted]

    @cached_property
    def grid(self) -> list[tuple[str, str, str]]:
        """(method, dataset, category) of every evaluation, in config order."""
        return [(method, dataset, category)
                for method, resolved in self.methods.items()
                for dataset in self.datasets if runs_on(resolved, dataset)
                for category in self.categories(dataset)]

    def wildcard_constraints(self) -> dict[str, str]:
        """Regular expressions of the wildcards: the configured names only."""
        names = r"[A-Za-z0-9_.-]+"
        return {"method": "|".join(map(re.escape, self.methods)),
                "dataset": "|".join(map(re.escape, self.datasets)),
                "category": CATEGORY_PATTERN, "name": names, "captioner": names,
                "autoencoder": names}

    # ------------------------------------------------------------- one variant

    def kind(self, method: str) -> type[MethodKind]:
        return kind_of(self.methods[method])

    def variant(self, method: str, category: str) -> dict[str, Any]:
        """The variant as its jobs for ``category`` see it (``per_category`` applied)."""
        return for_category(self.methods[method], category)

    def requirements(self, method: str, category: str) -> Requirements:
        key = (method, category)
        if key not in self._requirements:
            resolved = self.variant(method, category)
            self._requirements[key] = kind_of(resolved).requirements(params_of(resolved))
        return self._requirements[key]

    def unit(self, method: str, category: str) -> str:
        """The training unit of a category: ``all`` where one model serves the dataset."""
        kind = self.kind(method)
        return ALL_CATEGORIES if kind.per_dataset(params_of(self.methods[method])) else category

    def training_categories(self, dataset: str, unit: str) -> list[str]:
        """The categories a training unit reads: every category of the dataset for ``all``
        (the ``categories`` filter narrows evaluation, not what a dataset's model is)."""
        return list(self.full_categories[dataset]) if unit == ALL_CATEGORIES else [unit]

    # -------------------------------------------------- parameters of the jobs

    def rerun_params(self, method: str, category: str, *tiers: str) -> dict[str, Any]:
        """What reruns a job of ``method`` when it changes: the parameters of ``tiers``
        (train: a train job; train + infer: an infer job; train + infer + score:
        evaluate). Run-control settings are never part of it."""
        return tier_values(self.variant(method, category), *tiers)

    def job_params(self, method: str, category: str, *tiers: str) -> dict[str, Any]:
        """All a job runs with: the parameters of ``tiers`` and the run-control settings
        (checkpoint interval, inference batch size), which the job reads from here."""
        return tier_values(self.variant(method, category), *tiers, "run")

    def job(self, method: str, dataset: str, category: str, *tiers: str) -> Job:
        """What a train (``tiers``: train) or infer job (train, infer) of ``method`` on
        ``category`` (a train job's: its unit) runs with."""
        return Job(params=self.job_params(method, category, *tiers),
                   runtime=self.runtime_settings(), image_size=self.image_size(dataset),
                   artefacts=self.artefacts(method, dataset, category,
                                            inference="infer" in tiers))

    def train_scores(self, method: str) -> bool:
        """Whether the infer job of ``method`` scores the train split too."""
        return self.variants.train_scores[method]

    def runtime_settings(self) -> dict[str, Any]:
        """The config's ``runtime:`` block, with the results root's derived-data cache."""
        runtime = dict(self.config.get("runtime", {}))
        runtime.setdefault("cache_dir", self.paths.features_cache)
        return runtime

    def image_size(self, dataset: str) -> int:
        return self.datasets[dataset]["image_size"]

    # ----------------------------------------------------------------- inputs

    def dataset_params(self, dataset: str, category: str | None = None) -> dict[str, Any]:
        """The dataset entry as a category's manifest sees it: without the category list
        and the job resources, so that adding a category never reruns another's manifest."""
        entry = {k: v for k, v in self.datasets[dataset].items()
                 if k not in ("categories", "resources")}
        if category is not None:
            entry["categories"] = [category]
        return entry

    def download(self, dataset: str) -> list[str]:
        """The dataset's download marker, where the config asks for a download (or, in a
        rehearsal, for its published layout to be written)."""
        entry = self.datasets[dataset]
        if entry.get("download") or entry.get("rehearsal_layout"):
            return [self.paths.format(self.paths.download, dataset=dataset)]
        return []

    def manifests(self, dataset: str, categories: list[str]) -> list[str]:
        return [self.paths.format(self.paths.manifest, dataset=dataset, category=c)
                for c in categories]

    def weights(self, names: list[str] | tuple[str, ...]) -> list[str]:
        return [self.paths.format(self.paths.weights_marker, name=n) for n in names]

    def artefacts(self, method: str, dataset: str, category: str,
                  inference: bool = False) -> dict[str, dict[str, list[str]]]:
        """The declared upstream artefacts of a train job (with ``inference``: of an infer
        job) as the model reads them: stage -> name -> paths, one per category the unit
        reads (caption tables), or the model folder (an autoencoder)."""
        unit = self.unit(method, category)
        needs = self.requirements(method, category)
        out: dict[str, dict[str, list[str]]] = {}
        for artefact in needs.artefacts + (needs.infer_artefacts if inference else ()):
            if artefact.stage in _CAPTION_STAGES:
                template = getattr(self.paths, artefact.stage)
                paths = [self.paths.format(template, captioner=artefact.name, dataset=dataset,
                                           category=c)
                         for c in self.training_categories(dataset, unit)]
            elif artefact.stage == "autoencoder":
                paths = [Paths.folder(self.autoencoder_model(artefact.name, dataset, unit))]
            else:
                raise ValueError(f"{method}: unknown artefact stage {artefact.stage!r}")
            out.setdefault(artefact.stage, {})[artefact.name] = list(dict.fromkeys(paths))
        return out

    def autoencoder_model(self, name: str, dataset: str, unit: str) -> str:
        return self.paths.format(self.paths.autoencoder, autoencoder=name, dataset=dataset,
                                 category=unit)

    def artefact_files(self, method: str, dataset: str, category: str,
                       inference: bool = False) -> list[str]:
        """The files of :meth:`artefacts` that a job waits for (a model folder's marker)."""
        files = []
        for stage, names in self.artefacts(method, dataset, category, inference).items():
            for name, paths in names.items():
                if stage == "autoencoder":
                    paths = [self.autoencoder_model(name, dataset, self.unit(method, category))]
                files.extend(paths)
        return files

    def model(self, method: str, dataset: str, category: str) -> str:
        """The model a variant's category uses: its training owner's, of the unit."""
        return self.paths.format(self.paths.model, method=self.variants.trained_by[method],
                                 dataset=dataset, category=self.unit(method, category))

    def train_inputs(self, method: str, dataset: str, category: str) -> dict[str, list[str]]:
        """Manifests, weights and declared artefacts of a train job (``category``: the
        unit)."""
        return {
            "manifests": self.manifests(dataset, self.training_categories(dataset, category)),
            "weights": self.weights(self.requirements(method, category).weights),
            "artefacts": self.artefact_files(method, dataset, category),
        }

    def infer_inputs(self, method: str, dataset: str, category: str) -> dict[str, Any]:
        unit = self.unit(method, category)
        return {
            "manifests": self.manifests(dataset, self.training_categories(dataset, unit)),
            "weights": self.weights(self.requirements(method, category).weights),
            "artefacts": self.artefact_files(method, dataset, category, inference=True),
            "model": self.model(method, dataset, category),
        }

    def outputs(self, method: str, dataset: str, category: str) -> dict[str, str]:
        """The infer outputs a variant scores: those of its inference owner."""
        names = {"method": self.variants.inferred_by[method], "dataset": dataset,
                 "category": category}
        return {key: self.paths.format(getattr(self.paths, key), **names)
                for key in ("scores", "maps", "train_scores")}

    def evaluate_inputs(self, method: str, dataset: str, category: str) -> dict[str, str]:
        return {**self.outputs(method, dataset, category),
                "model": self.model(method, dataset, category)}

    def captioner_params(self, captioner: str) -> dict[str, Any]:
        return self.captioners[captioner].model_dump(mode="json")

    def captioner_env(self, captioner: str) -> str:
        """The conda environment file (in ``envs/``) of the captioner's caption jobs:
        InternVL2's remote code generates only on transformers < 4.52 (``internvl.yaml``;
        :func:`diffad.captions.families.check_internvl_transformers`)."""
        return ("internvl.yaml" if self.captioners[captioner].family == "internvl_chat"
                else "torch.yaml")

    def captioner_inputs(self, captioner: str, dataset: str, category: str) -> dict[str, list]:
        """The category's manifest and the captioner's weights."""
        return {"manifests": self.manifests(dataset, [category]),
                "weights": self.weights([self.captioners[captioner].weights])}

    def autoencoder_params(self, autoencoder: str) -> dict[str, Any]:
        """What reruns an autoencoder job (its run-control settings are not part of it)."""
        return without_run(self.autoencoders[autoencoder])

    def autoencoder_inputs(self, autoencoder: str, dataset: str, unit: str) -> dict[str, list]:
        """The manifests of the unit's categories and the weights of the pretrained VAE
        and of the perceptual network."""
        params = self.autoencoders[autoencoder]
        names = [params.weights] + ([params.perceptual] if params.finetune else [])
        return {"manifests": self.manifests(dataset, self.training_categories(dataset, unit)),
                "weights": self.weights(names)}

    # -------------------------------------------------------------- resources

    def resources(self, rule: str) -> dict[str, Any]:
        """The job resources of ``rule`` (a block of the config's ``resources:``): each a
        constant, or a function of the wildcards where a dataset overrides it."""
        out = {key: resource_of(self.config["resources"], self.datasets, rule, key)
               for key in RESOURCE_KEYS}
        if out["gpu"] == 0:  # a CPU rule asks for no GPU at all
            del out["gpu"], out["gpu_model"]
        return out

    def threads(self, rule: str) -> Any:
        return resource_of(self.config["resources"], self.datasets, rule, "cpus_per_task")

    # ---------------------------------------------------------------- targets

    @property
    def experiment(self) -> str:
        return self.config["experiment"]

    @cached_property
    def table_name(self) -> str:
        """The experiment's table name; a run narrowed by ``categories`` writes its tables
        apart (``<experiment>.partial-<categories>``), never over the full ones."""
        return table_name(self.experiment, self.config.get("categories"),
                          self.full_categories)

    def coverage_note(self) -> str:
        return coverage_note(self.config.get("categories"), self.full_categories)

    def table_files(self) -> dict[str, str]:
        return {ext: self.paths.format(self.paths.tables, name=self.table_name, ext=ext)
                for ext in TABLE_FORMATS}

    def tables_log(self) -> str:
        return self.paths.format(self.paths.log("tables", "name"), name=self.table_name)

    def metrics(self) -> list[str]:
        return [self.paths.format(self.paths.metrics, method=m, dataset=d, category=c)
                for m, d, c in self.grid]

    def heatmaps(self) -> list[str]:
        """Heatmaps of the variants named under ``methods:`` (a seeded one: its first
        run); a method grid's points (up to hundreds) get metrics and tables only."""
        return [self.paths.format(self.paths.heatmaps, method=m, dataset=d, category=c)
                for m, d, c in self.grid if m in self.variants.shown]

    @cached_property
    def strength_variants(self) -> list[str]:
        """The variants whose infer job also draws reconstructions at increasing strength
        (paper 000's Figure 4.1): named under ``methods:``, owners of their inference (a
        variant differing in score settings only would draw the same figure), of a kind
        that reconstructs from a ``strength``. A rehearsal draws it once per kind: the
        figure's code is the kind's, whatever the variant (on SD v1.5 at 512 px each
        figure is minutes of CPU)."""
        chosen = [m for m in self.variants.shown if self.variants.inferred_by[m] == m
                  and self.kind(m).reconstructs_by_strength(params_of(self.methods[m]))]
        if self.rehearsal is not None:
            first = {}
            for m in chosen:
                first.setdefault(self.kind(m).kind, m)
            chosen = [m for m in chosen if first[self.kind(m).kind] == m]
        return chosen

    def infer_constraints(self, strengths: bool) -> str:
        """The ``method`` wildcard of the infer rule without (``strengths`` False) or with
        the strength figure: each variant is made by exactly one of the two."""
        chosen = [m for m in self.methods if (m in self.strength_variants) == strengths]
        return "|".join(map(re.escape, chosen)) or "(?!)"

    def strength_figures(self) -> list[str]:
        return [self.paths.format(self.paths.strengths, method=m, dataset=d, category=c)
                for m, d, c in self.grid if m in self.strength_variants]

    def used_captioners(self) -> list[tuple[str, str]]:
        """(captioner, dataset) of every variant of the grid that trains on captions."""
        return sorted({(artefact.name, d) for m, d, c in self.grid
                       for artefact in self.requirements(m, c).artefacts
                       if artefact.stage == "captions"})

    def caption_pages(self) -> list[tuple[str, str]]:
        """(captioner, dataset) of the report's pages of sample captions: every one in
        use; none in a run narrowed by ``categories``, which leaves the full run's pages
        as they are (a page of the narrowed categories would replace them)."""
        return [] if self.config.get("categories") else self.used_captioners()

    def artefact_targets(self) -> list[str]:
        """A rehearsal's upstream artefacts that no rehearsed variant reads (a captioner
        or autoencoder whose code the kept variants do not run:
        :func:`~diffad.plan.rehearsal.rehearsal_artefacts`), made as targets of their own
        so that every model of the full run is rehearsed."""
        files = []
        for stage, name, dataset, unit in self.config.get("rehearsal_artefacts", []):
            if stage == "autoencoder":
                files.append(self.autoencoder_model(name, dataset, unit))
            else:
                files += [self.paths.format(self.paths.captions, captioner=name,
                                            dataset=dataset, category=c)
                          for c in self.training_categories(dataset, unit)]
        return files

    def caption_samples(self) -> list[str]:
        return [self.paths.format(self.paths.caption_samples, captioner=c, dataset=d)
                for c, d in self.caption_pages()]

    def caption_tables(self, captioner: str, dataset: str) -> list[str]:
        return [self.paths.format(self.paths.captions, captioner=captioner, dataset=dataset,
                                  category=c)
                for c in self.categories(dataset)]

    def metrics_chart(self) -> str:
        return self.paths.format(self.paths.metrics_chart, experiment=self.table_name)

    def reference_files(self) -> list[str]:
        return sorted(str(p) for p in Path(self.config["reference_dir"]).glob("*.csv"))

    def table_params(self) -> dict[str, Any]:
        """What the tables are built with (the build_tables rule's params)."""
        return {
            "title": self.table_name,
            "coverage": self.coverage_note(),
            "categories": self.full_categories,
            "references": {name: cfg["reference"] for name, cfg in self.methods.items()},
            "best_of": self.config.get("best_of", {}),
            "seeds": self.variants.seed_groups,
            "grids": self.variants.grid_points,
        }

    def cost_files(self) -> dict[str, str]:
        """A rehearsal's cost table and estimate (none for a real run)."""
        if self.rehearsal is None:
            return {}
        return {ext: self.paths.format(self.paths.cost, ext=ext) for ext in ("md", "csv")}

    def cost_inputs(self) -> list[str]:
        """What the cost table reads: every metrics row, model and autoencoder folder and
        caption table of the rehearsal."""
        jobs = self.jobs()
        return (self.metrics()
                + [self.paths.format(self.paths.model, method=m, dataset=d, category=c)
                   for m, d, c in jobs["train"]]
                + [self.autoencoder_model(n, d, u) for n, d, u in jobs["autoencoder"]]
                + [self.paths.format(getattr(self.paths, stage), captioner=n, dataset=d,
                                     category=c)
                   for stage in ("captions", "test_captions") for n, d, c in jobs[stage]])

    def final_outputs(self) -> list[str]:
        """Everything ``snakemake`` builds by default."""
        return (list(self.table_files().values()) + [self.metrics_chart()] + self.heatmaps()
                + self.caption_samples() + self.strength_figures() + self.artefact_targets()
                + list(self.cost_files().values()))

    def jobs(self) -> dict[str, list[tuple[str, ...]]]:
        """The jobs of a run from scratch to the default target: rule -> each job's
        wildcard values, the rules' own order (snakemake's dry run lists the same jobs;
        a test checks it). The rehearsal's cost estimate counts them."""
        grid = self.grid
        evaluated = sorted(set(grid))
        infers = sorted({(self.variants.inferred_by[m], d, c) for m, d, c in grid})
        figures = [(m, d, c) for m, d, c in grid if m in self.variants.shown]
        trains = sorted({(self.variants.trained_by[m], d, self.unit(m, c))
                         for m, d, c in infers})
        # What those jobs read: artefacts, manifests, weights.
        files: set[str] = set()
        for m, d, c in trains:
            files.update(*self.train_inputs(m, d, c).values())
        for m, d, c in infers:
            inputs = self.infer_inputs(m, d, c)
            files.update(inputs["manifests"], inputs["weights"], inputs["artefacts"])
        pages = self.caption_pages()
        for captioner, dataset in pages:
            files.update(self.caption_tables(captioner, dataset))
        files.update(self.artefact_targets())
        autoencoders = sorted(self._matches(self.paths.autoencoder, files))
        for name, d, unit in autoencoders:
            files.update(*self.autoencoder_inputs(name, d, unit).values())
        captions = sorted(self._matches(self.paths.captions, files))
        test_captions = sorted(self._matches(self.paths.test_captions, files))
        for captioner, d, c in captions + test_captions:
            files.update(*self.captioner_inputs(captioner, d, c).values())
        manifests = sorted(self._matches(self.paths.manifest, files))
        return {
            "download": [(d,) for d in self.datasets if self.download(d)],
            "manifest": manifests,
            "fetch_weights": sorted(self._matches(self.paths.weights_marker, files)),
            "captions": captions,
            "test_captions": test_captions,
            "autoencoder": autoencoders,
            "train": trains,
            "infer": [j for j in infers if j[0] not in self.strength_variants],
            "infer_with_strengths": [j for j in infers if j[0] in self.strength_variants],
            "evaluate": evaluated,
            "heatmaps": figures,
            "caption_samples": pages,
            "build_tables": [(self.table_name,)],
            "metrics_chart": [(self.table_name,)],
        }

    @staticmethod
    def _matches(template: str, files: set[str]) -> set[tuple[str, ...]]:
        """The wildcard values of the ``files`` that ``template`` makes."""
        names = re.findall(r"{(\w+)}", template)
        pattern = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
                             + "$")
        return {tuple(match[n] for n in names) for f in files
                if (match := pattern.match(f))}


__all__ = ["TABLE_FORMATS", "Job", "Plan"]
