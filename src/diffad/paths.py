"""Every file the workflow writes, as one path template each, under one results root.

The templates hold Snakemake wildcards (``{method}``, ``{dataset}``,
``{category}``...). The rules name their outputs with them (``output:
PATHS.model``), the plan (:mod:`diffad.plan`) formats them into the inputs of
later jobs, and the library reads files by them; no other module spells a
results path. A second results root is one argument: a rehearsal writes
everything under ``results/rehearsal/`` and its logs under
``logs/rehearsal/``, apart from a real run's.

>>> PATHS.model
'results/models/{method}/{dataset}/{category}/metadata.json'
>>> Paths.format(PATHS.manifest, dataset="visa", category="pcb1")
'results/data/visa/pcb1.parquet'
>>> Paths(results="results/rehearsal").manifest
'results/rehearsal/data/{dataset}/{category}.parquet'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """The path templates of one results root (``results``), its logs and weights cache."""

    results: str = "results"
    logs: str = "logs"
    weights: str = "resources/weights"

    # Filled in from the roots (one line each below, the only place a path is spelt).
    download: str = field(init=False)
    manifest: str = field(init=False)
    weights_marker: str = field(init=False)
    captions: str = field(init=False)
    test_captions: str = field(init=False)
    autoencoder: str = field(init=False)
    autoencoder_loss: str = field(init=False)
    model: str = field(init=False)
    model_loss: str = field(init=False)
    scores: str = field(init=False)
    maps: str = field(init=False)
    train_scores: str = field(init=False)
    metrics: str = field(init=False)
    features_cache: str = field(init=False)
    tables: str = field(init=False)
    metrics_chart: str = field(init=False)
    heatmaps: str = field(init=False)
    strengths: str = field(init=False)
    caption_samples: str = field(init=False)
    cost: str = field(init=False)

    def __post_init__(self) -> None:
        r = self.results
        templates = {
            # data: a download marker per dataset, one manifest per category
            "download": f"{r}/data/{{dataset}}/download.json",
            "manifest": f"{r}/data/{{dataset}}/{{category}}.parquet",
            # pretrained weights, one folder per source; source.json marks it complete
            "weights_marker": f"{self.weights}/{{name}}/source.json",
            # captions of the train images, and of the test images
            "captions": f"{r}/captions/{{captioner}}/{{dataset}}/{{category}}.parquet",
            "test_captions": f"{r}/captions/{{captioner}}/{{dataset}}/test/{{category}}.parquet",
            # model folders (metadata.json written last marks them complete)
            "autoencoder": f"{r}/models/autoencoder/{{autoencoder}}/{{dataset}}/{{category}}"
                           "/metadata.json",
            "autoencoder_loss": f"{r}/models/autoencoder/{{autoencoder}}/{{dataset}}/"
                                "{category}/loss.parquet",
            "model": f"{r}/models/{{method}}/{{dataset}}/{{category}}/metadata.json",
            "model_loss": f"{r}/models/{{method}}/{{dataset}}/{{category}}/loss.parquet",
            # inference: scores per image, the maps beside them, the train split's scores
            "scores": f"{r}/scores/{{method}}/{{dataset}}/{{category}}.parquet",
            "maps": f"{r}/scores/{{method}}/{{dataset}}/{{category}}.maps.safetensors",
            "train_scores": f"{r}/scores/{{method}}/{{dataset}}/train/{{category}}.parquet",
            "metrics": f"{r}/metrics/{{method}}/{{dataset}}/{{category}}.parquet",
            # derived data shared across variants (backbone features)
            "features_cache": f"{r}/cache",
            # the report
            "tables": f"{r}/tables/{{name}}.{{ext}}",
            "metrics_chart": f"{r}/figures/{{experiment}}/metrics.png",
            "heatmaps": f"{r}/figures/heatmaps/{{method}}/{{dataset}}/{{category}}.png",
            "strengths": f"{r}/figures/strengths/{{method}}/{{dataset}}/{{category}}.png",
            "caption_samples": f"{r}/figures/captions/{{captioner}}/{{dataset}}.html",
            # a rehearsal's measured cost and the estimate of its full run
            "cost": f"{r}/cost.{{ext}}",
        }
        for name, template in templates.items():
            object.__setattr__(self, name, template)

    def log(self, rule: str, *wildcards: str) -> str:
        """The log of ``rule``'s jobs: ``<logs>/<rule>/{w1}/{w2}....log``."""
        return "/".join([self.logs, rule, *(f"{{{w}}}" for w in wildcards)]) + ".log"

    @staticmethod
    def format(template: str, **wildcards: str) -> str:
        """``template`` with ``wildcards`` filled in (those not given are left as they are)."""
        return template.format_map(_Keep(wildcards))

    @staticmethod
    def folder(marker: str) -> str:
        """The folder a completeness marker (a model's ``metadata.json``) lies in."""
        return str(Path(marker).parent)


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return f"{{{key}}}"


#: The default results root of a real run.
PATHS = Paths()

__all__ = ["PATHS", "Paths"]
