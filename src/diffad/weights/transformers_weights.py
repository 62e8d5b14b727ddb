"""transformers weights: model and processor/tokenizer, as ``save_pretrained`` writes them.

The folder holds ``config.json``, ``model.safetensors`` (or shards with an
index), ``generation_config.json`` where there is one, and the processor's or
tokenizer's files (``preprocessor_config.json``, ``tokenizer.json``...). For a
model with its own code (``trust_remote_code``, e.g. InternVL2), ``save_pretrained``
copies the code files beside the config, so the folder loads offline too.

A ``random`` source (a rehearsal's) reads the repo's config, code and processor
files only, a few megabytes, and saves the architecture they describe with
seeded random weights: the real config of any hub model, InternVL2's own
modelling code included, without its weights.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from diffad.weights.builders import build_from_factory, pypi_model_folder, seeded
from diffad.weights.classes import library_class
from diffad.weights.hub import hub_offline, is_local_folder, resolve_revision
from diffad.weights.sources import WeightSource

DEFAULT_CLASS = "AutoModel"


def fetch_transformers(source: WeightSource, folder: Path, cache_dir: Path) -> dict[str, Any]:
    """Save ``source``'s model and processor into ``folder``; return its resolved revision."""
    if source.factory:
        model, processor = build_from_factory(source.factory)
        model.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)
        return {"factory": source.factory}
    if source.pypi:
        shipped = pypi_model_folder(source.pypi, source.subfolder)
        local = WeightSource(**{**source.to_dict(), "repo_id": str(shipped), "pypi": None,
                                "subfolder": None, "skip_components": ()})
        return {**fetch_transformers(local, folder, cache_dir),
                "pypi_version": importlib.metadata.version(source.pypi)}
    cls = library_class("transformers", source.cls, DEFAULT_CLASS)
    sha = resolve_revision(source.repo_id, source.revision)
    kwargs: dict[str, Any] = {"cache_dir": cache_dir,
                              "trust_remote_code": source.trust_remote_code}
    if not is_local_folder(source.repo_id):
        kwargs["revision"] = sha
    if source.subfolder:
        kwargs["subfolder"] = source.subfolder
    if source.random:
        model = _random_from_config(cls, source, kwargs)
    else:
        model = cls.from_pretrained(source.repo_id, **kwargs)
    model.save_pretrained(folder)
    if source.processor:
        processor_cls = library_class("transformers", source.processor, "AutoProcessor")
        processor_cls.from_pretrained(source.repo_id, **kwargs).save_pretrained(folder)
    return {"resolved_revision": sha, **({"random": True} if source.random else {})}


def _random_from_config(cls: Any, source: WeightSource, kwargs: dict[str, Any]) -> Any:
    """The architecture of ``source.repo_id``'s config, seeded random weights, in eval mode."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source.repo_id, **kwargs)
    remote = {"trust_remote_code": True} if source.trust_remote_code else {}
    with seeded():  # the seed of every rehearsal architecture: two fetches, same weights
        if hasattr(cls, "from_config"):  # the Auto classes (and a remote architecture)
            model = cls.from_config(config, **remote)
        else:
            model = cls(config)
    return model.eval()


def load_transformers_folder(folder: Path, source: WeightSource, cls: str | type | None = None,
                             **kwargs: Any) -> tuple[Any, Any]:
    """Model (``cls``, default the source's class) and processor (None if it has none)."""
    loader = library_class("transformers", cls or source.cls, DEFAULT_CLASS)
    common = {"local_files_only": True, "trust_remote_code": source.trust_remote_code}
    with hub_offline():
        model = loader.from_pretrained(folder, **common, **kwargs)
        processor = None
        if source.processor:
            processor_cls = library_class("transformers", source.processor, "AutoProcessor")
            processor = processor_cls.from_pretrained(folder, **common)
    return model, processor
