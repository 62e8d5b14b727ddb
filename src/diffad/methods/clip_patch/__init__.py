"""The CLIP patch-feature baseline of paper 000 (``clip_patch``).

The report (Sec. 3.7) names "a CLIP patch-based feature model ... implemented
for comparison" and gives nothing else; its notebooks hold none. diffad's
reading, a PatchCore-like memory bank on CLIP's patch tokens: per category, the
ViT-B/32 (OpenAI) patch tokens of the normal train images (after the final
layer norm, before the projection; 7 x 7 per 224-px image) form a memory bank;
a test patch's anomaly score is 1 - its largest cosine similarity to the bank;
the map is that grid resized bilinearly to the image, smoothed; the image score
is the map's maximum.
"""

from __future__ import annotations

from typing import Literal

from diffad.methods.base import MethodKind, Requirements, Scored
from diffad.methods.params import MethodParams, OpenClipWeights, run, score, train
from diffad.methods.registry import register_method
from diffad.scoring.fusion import gaussian_smooth, top_k_mean
from diffad.scoring.outputs import Outputs


class ClipPatchParams(MethodParams):
    clip_weights: OpenClipWeights = train("clip_vit_b32", "open_clip source (the report's "
                                                          "ViT-B/32)")
    infer_batch_size: int = run(32, "images per forward pass (memory bank and inference)",
                                ge=1)
    image_score: Literal["max", "top_k"] = score("max", "the map's maximum, or top-k mean")
    top_k: int = score(10, "pixels averaged by `top_k`", ge=1)
    sigma: float = score(4.0, "Gaussian smoothing of the map, pixels", ge=0)


@register_method
class ClipPatch(MethodKind):
    kind = "clip_patch"
    Params = ClipPatchParams
    model = "diffad.methods.clip_patch.model:ClipPatchModel"

    @classmethod
    def requirements(cls, params: ClipPatchParams) -> Requirements:
        return Requirements(weights=(params.clip_weights,))

    @classmethod
    def score(cls, params: ClipPatchParams, outputs: Outputs) -> Scored:
        maps = gaussian_smooth(outputs.map("patch"), params.sigma)
        k = 1 if params.image_score == "max" else params.top_k
        return Scored(top_k_mean(maps, k), maps)


__all__ = ["ClipPatch", "ClipPatchParams"]
