"""Atomic writes and provenance metadata for every file the pipeline produces.

A job killed half-way must never leave a file that looks finished: each
writer fills a temporary file beside the target and renames it over the
target, which POSIX makes atomic on one file system.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import diffad

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The suffix is kept so that libraries which infer the format from it
    (pyarrow, numpy, safetensors) behave as for the target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; a result file should be readable like any other.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: The Parquet schema-metadata key of :func:`provenance` (see :func:`read_provenance`).
PROVENANCE_KEY = b"diffad.provenance"


def write_parquet(df: pd.DataFrame, path: str | os.PathLike,
                  provenance: dict[str, Any] | None = None) -> None:
    """Write ``df`` to Parquet atomically, without the pandas index; ``provenance`` goes
    into the file's schema metadata (the rows stay the table's own columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if provenance is not None:
        table = table.replace_schema_metadata({
            **(table.schema.metadata or {}),
            PROVENANCE_KEY: json.dumps(provenance, sort_keys=True, default=_json_default)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance :func:`write_parquet` stored in a Parquet file ({} if none)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[PROVENANCE_KEY]) if PROVENANCE_KEY in metadata else {}


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def code_version() -> str:
    """The package version plus the git commit of the checkout, when there is one."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return diffad.__version__
    return f"{diffad.__version__}+g{commit}{'.dirty' if dirty else ''}"


def provenance(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Metadata recorded beside every model and table: what made it, and when."""
    return {
        "config": config or {},
        "seed": seed,
        "code_version": code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": _installed_version("torch"),
        # Every library whose version can move a number.
        "versions": {name: _installed_version(name) for name in SHAPING_LIBRARIES},
        "host": platform.node(),
    }


#: The distributions whose versions shape diffad's numbers (recorded with every model).
SHAPING_LIBRARIES = ("torch", "diffusers", "transformers", "timm", "open_clip_torch", "peft",
                     "scikit-learn", "scikit-image", "numpy", "snakemake")


def _installed_version(package: str) -> str | None:
    # Read from the installed metadata: importing torch here would make every
    # light job (manifests, metrics) depend on it.
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
