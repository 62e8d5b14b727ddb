"""Anomaly detection methods, registered by kind.

Importing this package registers every kind shipped with diffad; adding a
method is one module here plus its import below.
"""

from diffad.methods import latent_inversion, patchcore  # noqa: F401  (register the kinds)
from diffad.methods.base import AnomalyMethod, BatchPrediction, Runtime
from diffad.methods.registry import (
    build_method,
    expand_method_grids,
    grid_points,
    method_class,
    method_kinds,
    register_method,
    resolve_method,
    training_params,
    training_variants,
    weight_names,
)

__all__ = [
    "AnomalyMethod", "BatchPrediction", "Runtime", "build_method", "expand_method_grids",
    "grid_points",
    "method_class",
    "method_kinds", "register_method", "resolve_method", "training_params",
    "training_variants", "weight_names",
]
