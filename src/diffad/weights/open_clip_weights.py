"""open_clip weights in open_clip's own hub layout.

``open_clip_model.safetensors`` holds the weights and ``open_clip_config.json``
the model config (``model_cfg``) and preprocessing (``preprocess_cfg``), as
``open_clip.push_to_hf_hub.save_for_hf`` writes them; an HF tokenizer, where a
model has one, is saved beside them. ``create_model_and_transforms('local-dir:<folder>')``
rebuilds the model from these files alone: the built-in config table of the
installed open_clip is not consulted. (Models whose text tower is a
transformers model also read that model's config by name; none is registered.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffad.weights.builders import build_from_factory
from diffad.weights.hub import hub_offline
from diffad.weights.sources import WeightSource

WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


def fetch_open_clip(source: WeightSource, folder: Path, cache_dir: Path) -> dict[str, Any]:
    """Save ``source``'s open_clip model into ``folder``; return the pretrained tag's record."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if source.factory:
        model, model_cfg = build_from_factory(source.factory)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(folder / WEIGHTS_FILE))
        save_config_for_hf(model, folder / CONFIG_FILE, model_config=model_cfg)
        return {"factory": source.factory}
    tag = open_clip.get_pretrained_cfg(source.model, source.pretrained) or {}
    # OpenAI's weights were trained with QuickGELU, which the plain 'ViT-B-32'
    # config lacks: open_clip only warns, and the features are then subtly off.
    quick_gelu = bool(tag.get("quick_gelu", False))
    model = open_clip.create_model(source.model, pretrained=source.pretrained,
                                   force_quick_gelu=quick_gelu, cache_dir=str(cache_dir),
                                   require_pretrained=True)
    model_cfg = open_clip.get_model_config(source.model)
    if quick_gelu:
        model_cfg["quick_gelu"] = True
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / WEIGHTS_FILE))
    save_config_for_hf(model, folder / CONFIG_FILE, model_config=model_cfg)
    tokenizer = open_clip.get_tokenizer(source.model)
    if hasattr(tokenizer, "save_pretrained"):  # HF tokenizers; the default BPE ships with open_clip
        tokenizer.save_pretrained(folder)
    return {"pretrained_cfg": {k: v for k, v in tag.items() if _jsonable(v)}}


def load_open_clip_folder(folder: Path) -> tuple[Any, Any, Any]:
    """(model in eval mode, its evaluation preprocess, its tokenizer), hub off."""
    import open_clip

    spec = f"local-dir:{folder.resolve()}"
    with hub_offline():
        model, _, preprocess = open_clip.create_model_and_transforms(spec)
        tokenizer = open_clip.get_tokenizer(spec)
    return model.eval(), preprocess, tokenizer


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
