"""LPIPS: the learned perceptual distance of LDM's autoencoder loss, on our weights cache.

LPIPS (Zhang et al. 2018, v0.1, the version taming-transformers and LDM use)
compares two images in the feature space of a frozen ImageNet network: per
layer, each location's feature vector is divided by its L2 norm over the
channels, the squared difference of the two images' unit vectors is weighted
per channel by a non-negative 1 x 1 linear layer (learned on human
similarity judgements), averaged over the locations, and the layers' values
are summed.

For VGG-16 the layers are the five ReLU outputs relu1_2, relu2_2, relu3_3,
relu4_3 and relu5_3 (timm's ``features_only`` indices 0-4 of ``vgg16``) and the
linear layers are the official v0.1 ones shipped in the PyPI package
``lpips`` (``lpips/weights/v0.1/vgg.pth``, read from the installed files
without importing its network code). Any other timm backbone has no learned
calibration: every ``features_only`` stage is used with uniform channel
weights 1/C (the plain mean of the squared unit-vector difference), a
documented stand-in so that the embedded default (EfficientNet-Lite0, real
weights from PyPI) runs without a model hub.

Inputs are RGB in [0, 1]; the network's own normalisation (timm's
``pretrained_cfg`` mean/std) is applied here. LPIPS's ScalingLayer maps
[-1, 1] inputs onto exactly ImageNet's mean/std, so for VGG-16 this is the
official preprocessing.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch
from torch import nn

from diffad.errors import WeightsError
from diffad.runtime import Runtime
from diffad.weights import check_backbone, load_timm

#: The PyPI distribution shipping LPIPS's calibrated linear layers.
LPIPS_PACKAGE = "lpips"
#: timm architecture -> (LPIPS weights file stem, ``features_only`` out_indices of its layers)
CALIBRATED: dict[str, tuple[str, tuple[int, ...]]] = {
    # timm vgg16 feature_info: features.3, .8, .15, .22, .29 = relu1_2 ... relu5_3.
    "vgg16": ("vgg", (0, 1, 2, 3, 4)),
}
#: LPIPS's ``normalize_tensor`` epsilon.
EPS = 1e-10


def lpips_weights_file(net: str = "vgg", version: str = "v0.1") -> Path:
    """The installed ``lpips/weights/<version>/<net>.pth`` of the PyPI package ``lpips``."""
    try:
        dist = importlib.metadata.distribution(LPIPS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(f"LPIPS's calibrated weights come from the PyPI package "
                           f"{LPIPS_PACKAGE!r}, which is not installed: pip install "
                           f"'lpips>=0.1.4'") from None
    path = Path(str(dist.locate_file(f"lpips/weights/{version}/{net}.pth")))
    if not path.is_file():
        raise WeightsError(f"the installed {LPIPS_PACKAGE} {dist.version} ships no {path}")
    return path


def lpips_linear_weights(net: str = "vgg", version: str = "v0.1") -> list[torch.Tensor]:
    """LPIPS's per-layer channel weights ``lin0 ... linN`` (each (1, C, 1, 1)), in layer order."""
    path = lpips_weights_file(net, version)
    state = torch.load(path, map_location="cpu", weights_only=True)
    keys = sorted((k for k in state if k.endswith(".model.1.weight")),
                  key=lambda k: int(k.split(".")[0].removeprefix("lin")))
    if not keys:
        raise WeightsError(f"{path} holds no LPIPS linear layers (lin<i>.model.1.weight)")
    return [state[k].float() for k in keys]


def calibration_of(backbone: str) -> tuple[str, tuple[int, ...]] | None:
    """(LPIPS weights file stem, out_indices) for a timm weights source whose architecture
    LPIPS calibrated (``vgg16``, ``vgg16.tv_in1k``); None for any other."""
    source = check_backbone(backbone)
    return CALIBRATED.get((source.model or backbone).split(".")[0])


class LPIPS(nn.Module):
    """Frozen LPIPS distance between two batches of [0, 1] RGB images -> (B,).

    ``LPIPS(backbone, runtime)`` loads a timm weights source from the cache:
    the calibrated layers and weights for VGG-16, every stage with uniform
    weights otherwise. :meth:`from_features` wraps an already built timm
    ``features_only`` model. The network stays in eval mode and its
    parameters never require gradients, but gradients flow to the inputs.
    """

    def __init__(self, backbone: str, runtime: Runtime):
        super().__init__()
        calibrated = calibration_of(backbone)
        kwargs = {"out_indices": calibrated[1]} if calibrated else {}
        features = load_timm(backbone, runtime.weights_root, features_only=True, **kwargs)
        self.backbone = backbone
        self._setup(features, lpips_linear_weights(calibrated[0]) if calibrated else None)
        self.to(runtime.device)

    @classmethod
    def from_features(cls, features: nn.Module,
                      weights: list[torch.Tensor] | None = None) -> LPIPS:
        """LPIPS on a built timm ``features_only`` model; ``weights``: one (1, C, 1, 1)
        tensor per returned stage (None: uniform 1/C)."""
        lpips = cls.__new__(cls)
        nn.Module.__init__(lpips)
        lpips.backbone = str(features.pretrained_cfg.get("architecture", "custom"))
        lpips._setup(features, weights)
        return lpips

    def _setup(self, features: nn.Module, weights: list[torch.Tensor] | None) -> None:
        self.features = features.eval().requires_grad_(False)
        channels = list(features.feature_info.channels())
        if weights is None:
            weights = [torch.full((1, c, 1, 1), 1.0 / c) for c in channels]
        shapes = [tuple(w.shape) for w in weights]
        if shapes != [(1, c, 1, 1) for c in channels]:
            raise ValueError(f"LPIPS weights of shapes {shapes} do not fit the network's "
                             f"feature channels {channels}")
        self.layers = len(weights)
        for i, w in enumerate(weights):
            # LPIPS's training clamps the linear layers to w >= 0 (a distance); the
            # shipped v0.1 weights already are, so this never changes them.
            self.register_buffer(f"lin{i}", w.detach().float().clamp_min(0))
        cfg = features.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).float().view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).float().view(1, 3, 1, 1))

    @property
    def weights(self) -> list[torch.Tensor]:
        """The per-layer channel weights, each (1, C, 1, 1)."""
        return [getattr(self, f"lin{i}") for i in range(self.layers)]

    def train(self, mode: bool = True) -> LPIPS:
        # A frozen metric: BatchNorm statistics (EfficientNet) must never update.
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] twice -> (B,) distances (0 for identical images)."""
        fa = self.features((a - self.mean) / self.std)
        fb = self.features((b - self.mean) / self.std)
        total = a.new_zeros(a.shape[0], dtype=torch.float32)
        for x, y, w in zip(fa, fb, self.weights, strict=True):
            x, y = _unit(x.float()), _unit(y.float())
            total = total + ((x - y).pow(2) * w).sum(dim=1).mean(dim=(1, 2))
        return total


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Each location's feature vector divided by its L2 norm over the channels."""
    # vector_norm, not LPIPS's sqrt(sum(x**2)): its backward is 0, not NaN, where a
    # ReLU layer's feature vector is all zero.
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + EPS)


__all__ = ["CALIBRATED", "LPIPS", "LPIPS_PACKAGE", "calibration_of", "lpips_linear_weights",
           "lpips_weights_file"]
