"""Loaders: a cached folder into a model, never touching the hub.

Each loader checks the folder is complete (``source.json``; otherwise a
:class:`~diffad.errors.WeightsError` with the command that fetches it), that
it holds that library's weights and still matches the registry, then calls the
library's own ``from_pretrained`` on the local folder with the hub offline and
``local_files_only``. There is no fallback to a download or to random weights.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from diffad.errors import WeightsError
from diffad.weights.diffusers_weights import load_diffusers_folder
from diffad.weights.folders import fetched_source
from diffad.weights.hub import hub_offline
from diffad.weights.open_clip_weights import load_open_clip_folder
from diffad.weights.sources import weight_source
from diffad.weights.timm_weights import load_timm_folder
from diffad.weights.transformers_weights import load_transformers_folder

if TYPE_CHECKING:
    import torch


def load_timm(name: str, root: str | os.PathLike, **timm_kwargs: Any) -> torch.nn.Module:
    """timm model ``name`` with its cached weights (train mode, as ``timm.create_model``).

    ``timm_kwargs`` go to ``timm.create_model`` (``features_only``,
    ``out_indices``, ``num_classes``...); the architecture, its arguments and
    ``pretrained_cfg`` (mean/std, input size) come from the folder.
    """
    folder, _ = fetched_source(name, root, "timm")
    return load_timm_folder(folder, **timm_kwargs)


def load_diffusers(name: str, root: str | os.PathLike, cls: str | type | None = None,
                   **kwargs: Any) -> Any:
    """A diffusers pipeline or model; ``cls`` overrides the source's class (``AutoencoderKL``).

    ``kwargs`` go to ``from_pretrained`` (``torch_dtype``...). A single component
    of a cached pipeline loads with ``cls=...`` and ``subfolder="vae"``.
    """
    folder, source = fetched_source(name, root, "diffusers")
    return load_diffusers_folder(folder, source, cls, **kwargs)


def load_diffusers_component(name: str, root: str | os.PathLike, cls: str | type,
                             component: str, **kwargs: Any) -> Any:
    """One model of a cached diffusers source: the ``component`` subfolder of a pipeline
    folder (SD v1.5's ``unet`` or ``vae``), or the folder itself where it holds a single
    model (a tiny stand-in, a VAE repo)."""
    folder, source = fetched_source(name, root, "diffusers")
    subfolder = component if (folder / "model_index.json").is_file() else None
    return load_diffusers_folder(folder, source, cls, subfolder=subfolder, **kwargs)


def stored_parameters(name: str, root: str | os.PathLike, components: tuple[str, ...]) -> int:
    """Parameters of the ``components`` of a cached diffusers pipeline, counted from the
    safetensors headers: no tensor is read (a train job that only records the count does
    not load Stable Diffusion)."""
    from safetensors import safe_open

    folder, _ = fetched_source(name, root, "diffusers")
    total = 0
    for component in components:
        for path in sorted((folder / component).glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    total += math.prod(handle.get_slice(key).get_shape())
    return total


def load_text_encoder(name: str, root: str | os.PathLike) -> tuple[Any, Any]:
    """(text model, tokenizer): the ``text_encoder`` / ``tokenizer`` of a cached diffusers
    pipeline (SD v1.5's CLIP ViT-L/14 text tower), or a transformers source's model and
    tokenizer (the embedded default's MiniLM)."""
    if weight_source(name).library == "transformers":
        return load_transformers(name, root)
    folder, _ = fetched_source(name, root, "diffusers")
    if not (folder / "model_index.json").is_file():
        raise WeightsError(f"pretrained weights {name!r} in {folder} hold no pipeline with a "
                           "text_encoder and tokenizer")
    from transformers import AutoModel, AutoTokenizer

    with hub_offline():
        model = AutoModel.from_pretrained(folder / "text_encoder", local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    return model, tokenizer


def load_transformers(name: str, root: str | os.PathLike, cls: str | type | None = None,
                      **kwargs: Any) -> tuple[Any, Any]:
    """(model, processor or tokenizer or None); ``cls`` overrides the source's model class."""
    folder, source = fetched_source(name, root, "transformers")
    return load_transformers_folder(folder, source, cls, **kwargs)


def load_open_clip(name: str, root: str | os.PathLike) -> tuple[Any, Any, Any]:
    """(model in eval mode, evaluation preprocess, tokenizer) of an open_clip source."""
    folder, _ = fetched_source(name, root, "open_clip")
    return load_open_clip_folder(folder)
