"""Building a kind's model from resolved parameters, and loading a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffad.methods.base import MODEL_MARKER, AnomalyModel, Artefacts, read_model_config
from diffad.methods.params import parse_params
from diffad.methods.registry import COMMON_KEYS, kind_of, params_of

if TYPE_CHECKING:
    from diffad.runtime import Runtime


def build_model(resolved: dict[str, Any], runtime: Runtime,
                artefacts: Artefacts | None = None) -> AnomalyModel:
    """A fresh (untrained) model of a resolved variant."""
    return kind_of(resolved).model_class()(params_of(resolved), runtime, artefacts)


def load_model(folder: str | Path, runtime: Runtime, artefacts: Artefacts | None = None,
               overrides: dict[str, Any] | None = None) -> AnomalyModel:
    """The trained model in ``folder``, from its own ``config.json``; ``overrides`` set
    infer / score parameters (a variant that shares the model)."""
    folder = Path(folder)
    if not (folder / MODEL_MARKER).is_file():
        raise FileNotFoundError(f"{folder} holds no complete model ({MODEL_MARKER} missing); "
                                "rerun its train rule")
    config = read_model_config(folder)
    resolved = {"kind": config["kind"], **config["params"], **(overrides or {})}
    if config.get("plugin"):
        resolved["plugin"] = config["plugin"]
    kind = kind_of(resolved)
    # A folder written by another version of diffad names it, instead of a bare
    # validation error: retraining is the way out.
    params = parse_params(kind.Params, {k: v for k, v in resolved.items()
                                        if k not in COMMON_KEYS},
                          f"{folder / 'config.json'} (retrain this model)")
    model = kind.model_class()(params, runtime, artefacts)
    model.load_networks(folder)
    return model
