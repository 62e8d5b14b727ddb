"""Pretrained weights: a registry of sources, a local cache of folders, offline loaders.

Compute nodes are often offline. The local rule ``fetch_weights`` runs
:func:`fetch_weights` on the login node and writes each source into its own
folder, in the reading library's own ``save_pretrained`` layout::

    resources/weights/<name>/
        source.json                 # written last: the folder is complete
        timm:         model.safetensors, config.json (architecture, pretrained_cfg)
        diffusers:    model_index.json, unet/ vae/ text_encoder/ tokenizer/ scheduler/ ...
                      (a single model: config.json, diffusion_pytorch_model.safetensors)
        transformers: config.json, model*.safetensors, processor/tokenizer files
        open_clip:    open_clip_model.safetensors, open_clip_config.json

Jobs load with :func:`load_timm`, :func:`load_diffusers`,
:func:`load_transformers` or :func:`load_open_clip`: ``from_pretrained`` on the
local folder with ``HF_HUB_OFFLINE=1`` and ``local_files_only``. A missing
folder raises :class:`~diffad.errors.WeightsError` naming the command that
fetches it (``snakemake --cores 1 <root>/<name>/source.json``); nothing falls
back to a download or to random weights.

Sources (:mod:`diffad.weights.sources`) are keyed by name; a timm model name
that is not registered is an implicit timm source, and any other unknown name
is a :class:`~diffad.errors.ConfigError` when the DAG is built.
"""

from diffad.weights.fetch import fetch_weights
from diffad.weights.folders import MARKER, fetch_command, weights_folder
from diffad.weights.hub import hub_offline
from diffad.weights.load import (
    load_diffusers,
    load_diffusers_component,
    load_open_clip,
    load_text_encoder,
    load_timm,
    load_transformers,
    stored_parameters,
)
from diffad.weights.sources import (
    LIBRARIES,
    WeightSource,
    check_backbone,
    register_source,
    weight_source,
)

__all__ = [
    "LIBRARIES",
    "MARKER",
    "WeightSource",
    "check_backbone",
    "fetch_command",
    "fetch_weights",
    "hub_offline",
    "load_diffusers",
    "load_diffusers_component",
    "load_open_clip",
    "load_text_encoder",
    "load_timm",
    "load_transformers",
    "register_source",
    "stored_parameters",
    "weight_source",
    "weights_folder",
]
