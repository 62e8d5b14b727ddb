"""Anomaly detection methods, registered by kind: one package per kind.

Importing this package registers every kind shipped with diffad without
importing torch: a kind's declarations (parameters by tier, requirements,
score tier) are read when the DAG is built, and its model (``<kind>/model.py``)
only by the train and infer jobs. Adding a method is one package here plus
its import below, or one module of your own listed under the config's
``plugins:``.
"""

# Register the kinds.
from diffad.methods import (  # noqa: F401
    clip_patch,
    esm,
    latent_inversion,
    latent_unet,
    patchcore,
    sd_img2img,
    vlmdiff,
)
from diffad.methods.base import (
    ALL_CATEGORIES,
    AnomalyModel,
    Artefact,
    Artefacts,
    MethodKind,
    Prediction,
    Requirements,
    Scored,
)
from diffad.methods.loading import build_model, load_model
from diffad.methods.params import MethodParams, infer, run, score, train
from diffad.methods.registry import (
    for_category,
    kind_of,
    load_plugins,
    method_kind,
    method_kinds,
    params_of,
    register_method,
    resolve_method,
    runs_on,
    tier_values,
)

__all__ = [
    "ALL_CATEGORIES", "AnomalyModel", "Artefact", "Artefacts", "MethodKind", "MethodParams",
    "Prediction", "Requirements", "Scored", "build_model", "for_category", "infer", "kind_of",
    "load_model", "load_plugins", "method_kind", "method_kinds", "params_of",
    "register_method", "resolve_method", "run", "runs_on", "score", "tier_values", "train",
]
