"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

The reference baseline. Algorithm (the networks and the memory bank are in
:mod:`.model`, the coreset in :mod:`.coreset`):

1. Features of a pretrained CNN at two intermediate stages (``layers``; for
   ``wide_resnet50_2`` timm's indices 2 and 3 are ResNet layer2 and layer3),
   each averaged over its 3x3 neighbourhood (locally aware patch features),
   the coarser one upsampled to the finer grid, concatenated, and reduced to
   ``embed_dim`` channels by adaptive average pooling over channels.
2. A memory bank of all train patch features, subsampled by greedy k-center
   coreset selection (``coreset_ratio``) on a random projection to
   ``projection_dim`` dimensions (Johnson-Lindenstrauss) for speed.
3. At test time each patch's score is its mean distance to its
   ``patch_neighbors`` nearest memory-bank entries (1 in the paper). Stored
   detectors: ``max`` (the largest patch score, the paper's s*), ``reweighted``
   (s* times the weight of the paper's Eq. 7 over the ``reweight_neighbors``
   nearest bank entries of m*), and the map ``patch`` (patch scores upsampled
   bilinearly to the image).
4. Score tier: the map smoothed by a Gaussian of ``sigma`` = 4 pixels, and the
   image score ``image_score``: ``max`` or ``reweighted``.

``multi_class: true`` trains one memory bank on every category of a dataset
(ADer's unified setting) and evaluates it per category. ``center_crop``
follows the paper's resize-then-crop preprocessing (256 -> 224); the default
(none) is anomalib's. Differences from the paper and the reference code are
listed in docs/protocols.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from diffad.methods.base import MethodKind, Requirements, Scored
from diffad.methods.params import Backbone, MethodParams, infer, run, score, train
from diffad.methods.registry import register_method
from diffad.scoring.fusion import gaussian_smooth
from diffad.scoring.outputs import Outputs

#: timm ``features_only`` CNNs expose five stages, indices 0 to 4.
FEATURE_STAGES = range(5)


class PatchCoreParams(MethodParams):
    backbone: Backbone = train("wide_resnet50_2", "pretrained timm CNN (a weights source name)")
    layers: list[int] = train([2, 3], "timm features_only stage indices, ascending",
                              min_length=1)
    embed_dim: int = train(1024, "channels after adaptive average pooling", ge=1)
    coreset_ratio: float = train(0.1, "fraction of train patches kept", gt=0, le=1)
    projection_dim: int = train(128, "random projection for the coreset; 0: none", ge=0)
    multi_class: bool = train(False, "one memory bank per dataset (category `all`)")
    center_crop: int | None = train(None, "crop the resized image to this side (the paper: "
                                    "256 -> 224), evaluated on the crop", ge=16)
    infer_batch_size: int = run(8, "images per forward pass (memory bank and inference)",
                                ge=1)
    patch_neighbors: int = infer(1, "nearest bank entries averaged per patch score", ge=1)
    reweight_neighbors: int = infer(9, "b of Eq. 7: bank neighbours of m* in the weight",
                                    ge=1)
    image_score: Literal["max", "reweighted"] = score(
        "max", "`max`: s* (anomalib, the reference code); `reweighted`: Eq. 7")
    sigma: float = score(4.0, "Gaussian smoothing of the map, pixels (0: none)", ge=0)

    @field_validator("layers")
    @classmethod
    def _stages(cls, value: list[int]) -> list[int]:
        if any(i not in FEATURE_STAGES for i in value) or value != sorted(set(value)):
            raise ValueError(f"must be ascending distinct stage indices in "
                             f"{list(FEATURE_STAGES)}, got {value}")
        return value


@register_method
class PatchCore(MethodKind):
    kind = "patchcore"
    Params = PatchCoreParams
    model = "diffad.methods.patchcore.model:PatchCoreModel"

    @classmethod
    def per_dataset(cls, params: PatchCoreParams) -> bool:
        return params.multi_class

    @classmethod
    def requirements(cls, params: PatchCoreParams) -> Requirements:
        return Requirements(weights=(params.backbone,))

    @classmethod
    def score(cls, params: PatchCoreParams, outputs: Outputs) -> Scored:
        maps = gaussian_smooth(outputs.map("patch"), params.sigma)
        return Scored(outputs.scores(params.image_score), maps, crop=params.center_crop)


__all__ = ["PatchCore", "PatchCoreParams"]
