"""Job resources per rule, from the config's ``resources:`` block and dataset overrides.

A dataset entry may carry its own ``resources:`` block of the same shape
(VisA's larger test split, Real-IAD's memory); its values win for that
dataset's jobs. Where no dataset overrides a key, the resource is a
constant: Snakemake evaluates a function once per job, which costs seconds
in a DAG of thousands of jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The keys of a rule's block, in the order a SLURM job sees them.
RESOURCE_KEYS = ("mem_mb", "runtime", "cpus_per_task", "gpu", "gpu_model")


def resource_of(resources: dict[str, Any], datasets: dict[str, dict[str, Any]], rule: str,
                key: str) -> Any | Callable[[Any], Any]:
    """``key`` of ``rule``'s resources: the constant of the ``resources:`` block where no
    dataset overrides it, else a function of the job's wildcards (its ``dataset``)."""
    default = resources[rule].get(key)
    overrides = {name: cfg["resources"][rule][key] for name, cfg in datasets.items()
                 if key in cfg.get("resources", {}).get(rule, {})}
    if not overrides:
        return default

    def resource(wildcards: Any) -> Any:
        return overrides.get(wildcards.dataset, default)

    return resource


__all__ = ["RESOURCE_KEYS", "resource_of"]
