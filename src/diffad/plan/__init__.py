"""The DAG's decisions for one config: :class:`Plan` (grid, training units, job sharing,
artefacts, job parameters, resources, targets), the variants of a config
(:mod:`.variants`) and the resources of its jobs (:mod:`.resources`). The paths
every job writes are :mod:`diffad.paths`.

Above every other package of the library (it reads the methods' declarations,
the datasets' category lists and the upstream stages' entries) and below the
workflow: rules/common.smk builds one ``Plan`` and adapts its methods to wildcards.
"""

from diffad.plan.plan import TABLE_FORMATS, Job, Plan
from diffad.plan.resources import RESOURCE_KEYS, resource_of
from diffad.plan.variants import (
    RESERVED_NAMES,
    MethodSet,
    check_artefacts,
    check_datasets,
    expand_method_grids,
    grid_points,
    method_set,
)

__all__ = ["RESERVED_NAMES", "RESOURCE_KEYS", "TABLE_FORMATS", "Job", "MethodSet", "Plan",
           "check_artefacts", "check_datasets", "expand_method_grids", "grid_points",
           "method_set", "resource_of"]
