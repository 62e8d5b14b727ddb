"""timm weights in timm's own hub layout: ``model.safetensors`` + ``config.json``.

``config.json`` is what ``timm.models.save_for_hf`` writes (architecture,
``pretrained_cfg`` with mean/std/input size, the model arguments), so the
folder is read back with timm's ``local-dir:`` scheme and no registry lookup:
the architecture and its preprocessing come from the folder, not from
whatever the installed timm now calls the default tag.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffad.errors import ConfigError, WeightsError
from diffad.weights.builders import seeded
from diffad.weights.hub import hub_offline, is_local_folder, resolve_revision
from diffad.weights.pypi_checkpoints import pypi_state_dict
from diffad.weights.sources import WeightSource

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "model.safetensors"


def fetch_timm(source: WeightSource, folder: Path, cache_dir: Path) -> dict[str, Any]:
    """Save ``source``'s timm model into ``folder``; return what to record about its origin."""
    import timm
    from timm.models import save_for_hf

    origin: dict[str, Any] = {}
    if source.random:
        with seeded(0):
            model = timm.create_model(source.model, pretrained=False)
        origin["random"] = True
    elif source.pypi:
        model = timm.create_model(source.model, pretrained=False)
        # strict: a renaming slip must fail here, not give silently random features.
        model.load_state_dict(pypi_state_dict(source.pypi), strict=True)
        origin["pypi_version"] = importlib.metadata.version(source.pypi)
    elif source.repo_id:
        if is_local_folder(source.repo_id):
            spec = f"local-dir:{Path(source.repo_id).expanduser().resolve()}"
        else:
            sha = resolve_revision(source.repo_id, source.revision)
            origin["resolved_revision"] = sha
            spec = f"hf-hub:{source.repo_id}@{sha}"
        model = timm.create_model(spec, pretrained=True, cache_dir=cache_dir)
    else:
        cfg = timm.models.get_pretrained_cfg(source.model)
        hub_id = (cfg.hf_hub_id or "").split("@")[0].rstrip("/") if cfg else ""
        overlay = None
        if hub_id:
            # Pin the download to the commit recorded, not to whatever the branch is then.
            sha = resolve_revision(hub_id, source.revision)
            origin.update(hf_hub_id=hub_id, resolved_revision=sha)
            overlay = {"hf_hub_id": f"{hub_id}@{sha}"}
        elif source.revision:
            raise ConfigError(f"weights source {source.name!r}: timm model {source.model} has "
                              f"no hub weights, so revision {source.revision!r} cannot apply")
        else:
            origin["url"] = cfg.url if cfg else None
        model = timm.create_model(source.model, pretrained=True, pretrained_cfg_overlay=overlay,
                                  cache_dir=cache_dir)
    save_for_hf(model, folder, safe_serialization=True)
    return origin


def load_timm_folder(folder: Path, **timm_kwargs: Any) -> torch.nn.Module:
    """Create the model saved in ``folder`` with its weights; ``timm_kwargs`` adapt it.

    With ``features_only``, only the weights of the layers the model keeps are
    handed to timm: a truncated model (EfficientNet's feature class has no
    head) would otherwise log "Unexpected keys (conv_head, bn2, classifier...)"
    on every job. A layer of the model absent from the file is an error, never
    a silently random layer.
    """
    import timm

    spec = f"local-dir:{folder.resolve()}"
    overlay = None
    if timm_kwargs.get("features_only"):
        overlay = _used_weights_overlay(spec, folder / WEIGHTS_FILE, timm_kwargs)
    with hub_offline():
        model = timm.create_model(spec, pretrained=True, pretrained_cfg_overlay=overlay,
                                  **timm_kwargs)
    if overlay is not None:
        # The tensors now live in the model; the config must not keep a second copy.
        model.pretrained_cfg.pop("state_dict", None)
    return model


def _used_weights_overlay(spec: str, path: Path,
                          timm_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """A ``pretrained_cfg`` overlay carrying only the tensors the built model has, or None."""
    import timm
    import torch
    from safetensors import safe_open

    try:
        # On the meta device: the layer names without allocating or initialising anything.
        with torch.device("meta"):
            probe = timm.create_model(spec, pretrained=False, **timm_kwargs)
    except Exception:  # a model whose constructor needs real tensors: build it for real
        probe = timm.create_model(spec, pretrained=False, **timm_kwargs)
    if type(probe).__module__.startswith("timm.models._features"):
        # Wrappers (FeatureListNet, FeatureGetterNet...) are loaded as the full
        # model and pruned afterwards: timm sees no unexpected keys there.
        return None
    wanted = set(probe.state_dict())
    with safe_open(str(path), framework="pt") as f:
        stored = set(f.keys())
        missing = sorted(wanted - stored)
        if missing:
            raise WeightsError(f"{path} lacks {len(missing)} tensors of the model "
                               f"({', '.join(missing[:5])}...): it was saved from another model")
        if stored <= wanted:
            return None
        state = {k: f.get_tensor(k) for k in sorted(wanted)}
    # source=None: the local-dir source would otherwise win over the state dict.
    return {"source": None, "state_dict": state}
