"""One folder per weights source in the cache, and the marker that says it is complete.

``<root>/<name>/`` holds the library's own ``save_pretrained`` layout and,
written last, ``source.json``: the source, library, requested and resolved
revision, library versions and fetch time. A folder without the marker is an
interrupted fetch and is never loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from diffad.errors import WeightsError
from diffad.weights.sources import WeightSource, weight_source

#: written last by the fetch; its presence means the folder is complete
MARKER = "source.json"


def fetch_command(name: str, root: str | os.PathLike) -> str:
    """The command that fetches ``name`` into ``root`` (the local rule ``fetch_weights``)."""
    return f"snakemake --cores 1 {Path(root) / name / MARKER}"


def weights_folder(name: str, root: str | os.PathLike) -> Path:
    """``root/name``, checked complete; WeightsError naming the fetch command otherwise."""
    folder = Path(root) / name
    if not (folder / MARKER).is_file():
        state = ("holds an interrupted fetch (no source.json)" if folder.is_dir()
                 else "does not exist")
        raise WeightsError(
            f"pretrained weights {name!r} are missing: {folder} {state}. Fetch them with the "
            f"local rule `fetch_weights` on a machine that reaches the model hub: "
            f"{fetch_command(name, root)}"
        )
    return folder


def fetched_source(name: str, root: str | os.PathLike, library: str) -> tuple[Path, WeightSource]:
    """The folder and the source it was fetched from, checked against the registry.

    The folder describes itself, so that a job loads what was fetched; but a
    registry entry changed since (another repo, revision or tag) must not be
    answered with the old weights, nor a folder of another library.
    """
    folder = weights_folder(name, root)
    record = json.loads((folder / MARKER).read_text())
    fetched = WeightSource.from_dict(record["source"])
    if fetched.library != library:
        raise WeightsError(f"pretrained weights {name!r} in {folder} are {fetched.library} "
                           f"weights, not {library}")
    try:
        current = weight_source(name)
    except ValueError:
        current = None  # registered only in the process that fetched it: trust the folder
    if current is not None and current.identity() != fetched.identity():
        raise WeightsError(
            f"pretrained weights {name!r} in {folder} were fetched from {fetched.identity()}, "
            f"but the registry now says {current.identity()}. Fetch them again: "
            f"snakemake --cores 1 --forcerun fetch_weights {Path(root) / name / MARKER}"
        )
    return folder, fetched
