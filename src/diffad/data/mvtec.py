"""MVTec AD (``mvtec_ad``, downloadable) and MPDD (``mpdd``, local only).

Both follow the MVTec layout (see :mod:`diffad.data.folder`) with a mask,
``ground_truth/<defect>/<stem>_mask.png``, for every anomalous test image.
Without ``categories`` in the config, all categories of the benchmark are
used; a listed name outside them is refused at DAG build. Each category's
manifest reads only ``<root>/<category>/``; MVTec AD is downloaded (with
``download: true``) once per dataset by ``download_dataset``, never by a
manifest.
"""

from __future__ import annotations

from typing import Any

from diffad.data.download import ensure_downloaded, require_downloaded
from diffad.data.folder import scan_category
from diffad.data.options import require_root, root_of
from diffad.data.registry import Listing, register_dataset

MVTEC_AD_URL = (
    "https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/"
    "420938113-1629960298/mvtec_anomaly_detection.tar.xz"
)
MVTEC_AD_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
MVTEC_AD_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)

MPDD_CATEGORIES = (
    "bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes",
)

_MVTEC_LAYOUT = "<root>/<category>/{train/good,test/<defect>,ground_truth/<defect>}/"


_MVTEC_AD_MANUAL = (
    "download mvtec_anomaly_detection.tar.xz from "
    "https://www.mvtec.com/company/research/datasets/mvtec-anomaly-detection and "
    "extract it so that " + _MVTEC_LAYOUT + " exists under the root."
)


def _download_mvtec_ad(name: str, cfg: dict[str, Any], progress: bool) -> None:
    ensure_downloaded(name, cfg, root_of(name, cfg), url=MVTEC_AD_URL, sha256=MVTEC_AD_SHA256,
                      manual=_MVTEC_AD_MANUAL, progress=progress)


@register_dataset("mvtec_ad", categories=MVTEC_AD_CATEGORIES, download=_download_mvtec_ad)
def _build_mvtec_ad(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    root = root_of(name, cfg)
    require_downloaded(name, cfg, root, url=MVTEC_AD_URL, manual=_MVTEC_AD_MANUAL)
    return scan_category(root, category, masks="required")


def _mpdd_root(name: str, cfg: dict[str, Any]) -> str:
    root = root_of(name, cfg)
    require_root(
        root,
        "MPDD is not downloaded automatically: get it from the link at "
        "https://github.com/stepanje/MPDD and extract it so that "
        f"{_MVTEC_LAYOUT} exists under {root} "
        f"(categories: {', '.join(MPDD_CATEGORIES)}).",
    )
    return root


def _require_mpdd(name: str, cfg: dict[str, Any], progress: bool) -> None:
    _mpdd_root(name, cfg)


@register_dataset("mpdd", categories=MPDD_CATEGORIES, download=_require_mpdd)
def _build_mpdd(name: str, cfg: dict[str, Any], category: str, progress: bool) -> Listing:
    return scan_category(_mpdd_root(name, cfg), category, masks="required")
