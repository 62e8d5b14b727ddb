"""Feature-space distance between an image and its reconstruction: the S_cos detector.

Reconstruction-based methods (paper 002's S_cos, VLMDiff's and DiAD's anomaly
maps, GLAD's) compare the input and its reconstruction in the feature space
of a frozen pretrained network rather than in pixels, so that a faithful
reconstruction that differs in texture detail is not an anomaly:

1. Intermediate features of both images at ``layers`` (ViT blocks or CNN
   stages, timm's ``forward_intermediates``), after the backbone's own
   normalisation.
2. Per layer and location, 1 - cosine similarity over the channels,
   stabilised where both feature vectors are near zero (flat background after
   a ReLU-like activation, where the plain cosine is noise): with
   ``c = floor`` times the image's mean |a||b|, 1 - (a.b + c) / (|a||b| + c),
   which is the cosine distance wherever |a||b| >> c and 0 where both vanish.
3. Each layer's map bilinearly resized to the output size, then averaged over
   the layers.

ViTs run with ``dynamic_img_size`` so that any image side that is a multiple
of the patch size works (position embeddings interpolated).
"""

from __future__ import annotations

import torch

from diffad.device import autocast
from diffad.models.resize import upsample_maps
from diffad.runtime import Runtime
from diffad.weights import load_timm, weight_source


class IntermediateFeatures(torch.nn.Module):
    """A frozen timm backbone returning its features at ``layers``."""

    def __init__(self, name: str, layers: list[int], runtime: Runtime, norm: bool = False):
        super().__init__()
        source = weight_source(name, library="timm")
        is_vit = (source.model or name).startswith(("vit", "deit"))
        kwargs = {"dynamic_img_size": True} if is_vit else {}
        self.model = load_timm(name, runtime.weights_root, **kwargs).to(runtime.device).eval()
        self.model.requires_grad_(False)
        self.layers = list(layers)
        # A ViT's final norm on its intermediates: DINO's get_intermediate_layers applies it
        # (VLMDiff's maps); timm's default leaves them raw.
        self.norm = norm
        self.runtime = runtime
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))
        self.to(runtime.device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> one (B, C_l, h_l, w_l) map per layer."""
        with autocast(self.runtime.device):
            vit = {"output_fmt": "NCHW", "norm": self.norm} if hasattr(
                self.model, "patch_embed") else {}
            return [f.float() for f in self.model.forward_intermediates(
                (images - self.mean) / self.std, indices=self.layers, intermediates_only=True,
                **vit)]


@torch.no_grad()
def cosine_distance_map(features: IntermediateFeatures, images: torch.Tensor,
                        reconstructions: torch.Tensor, size: int,
                        floor: float = 0.01) -> torch.Tensor:
    """(B, size, size): 1 - cosine similarity of the two images' features, layer mean."""
    maps = []
    for a, b in zip(features(images), features(reconstructions), strict=True):
        norms = a.norm(dim=1) * b.norm(dim=1)
        c = floor * norms.mean(dim=(1, 2), keepdim=True) + 1e-12
        distance = 1 - ((a * b).sum(dim=1) + c) / (norms + c)
        maps.append(upsample_maps(distance, size))
    return torch.stack(maps).mean(dim=0)


__all__ = ["IntermediateFeatures", "cosine_distance_map"]
