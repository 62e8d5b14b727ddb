"""diffusers weights: a pipeline folder or a single model, as ``save_pretrained`` writes them.

A pipeline (SD v1.5) is ``model_index.json`` plus one folder per component
(``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``...), each
a config and safetensors; a single model (``AutoencoderKL`` from the ``vae``
subfolder of a pipeline repo) is ``config.json`` + ``diffusion_pytorch_model.safetensors``
at the top of its folder, the subfolder flattened away.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from diffad.weights.builders import build_from_factory
from diffad.weights.classes import library_class
from diffad.weights.hub import hub_offline, is_local_folder, resolve_revision
from diffad.weights.sources import WeightSource

DEFAULT_CLASS = "DiffusionPipeline"


def fetch_diffusers(source: WeightSource, folder: Path, cache_dir: Path) -> dict[str, Any]:
    """Save ``source`` into ``folder`` with ``save_pretrained``; return its resolved revision."""
    if source.factory:
        build_from_factory(source.factory).save_pretrained(folder, safe_serialization=True)
        return {"factory": source.factory}
    cls = library_class("diffusers", source.cls, DEFAULT_CLASS)
    sha = resolve_revision(source.repo_id, source.revision)
    kwargs: dict[str, Any] = {"cache_dir": cache_dir}
    if not is_local_folder(source.repo_id):
        kwargs["revision"] = sha
    if source.subfolder:
        kwargs["subfolder"] = source.subfolder
    for component in source.skip_components:
        kwargs[component] = None
    if ("safety_checker" in source.skip_components
            and "requires_safety_checker" in inspect.signature(cls.__init__).parameters):
        # Recorded in model_index.json: loading the folder then logs no warning
        # about the missing safety checker.
        kwargs["requires_safety_checker"] = False
    obj = cls.from_pretrained(source.repo_id, **kwargs)
    obj.save_pretrained(folder, safe_serialization=True)
    return {"resolved_revision": sha}


def load_diffusers_folder(folder: Path, source: WeightSource, cls: str | type | None = None,
                          **kwargs: Any) -> Any:
    """``cls`` (default: the source's class) ``.from_pretrained(folder)``, hub off."""
    loader = library_class("diffusers", cls or source.cls, DEFAULT_CLASS)
    with hub_offline():
        return loader.from_pretrained(folder, local_files_only=True, **kwargs)
