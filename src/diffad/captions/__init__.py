"""The caption stage of VLMDiff (paper 003): a vision-language model describes each image.

Public API::

    # diffad.captions (torch-free: read when the DAG is built)
    PROMPTS, BUILTIN_CAPTIONERS                       # named prompts, built-in captioners
    CaptionerParams                                   # one captioner's settings (strict)
    resolve_captioners(block) -> {name: CaptionerParams}   # built-ins + `captioners:`
    # diffad.captions.families / .table / .tiling (the jobs)
    load_captioner(params, runtime) -> (model, processor)
    generate_captions(family, model, processor, images, prompt, params, device) -> [str]
    caption_images(name, params, rows, runtime, output) -> DataFrame   # resumable table
    read_captions(paths) -> {image_path: caption}
    dynamic_tiles(image, ...), tiles_to_tensor(tiles, ...)   # InternVL's tiling

A caption table (``CAPTION_COLUMNS``) holds one row per image: its path,
split and category, the caption, the captioner's name, the prompt's text and
the generation seconds per image.
"""

# Torch-free: the DAG build resolves captioners without importing torch; the jobs import
# the generation side from its modules (``diffad.captions.table``, ``.families``, ``.tiling``).
from diffad.captions.params import (
    BUILTIN_CAPTIONERS,
    PROMPTS,
    CaptionerParams,
    resolve_captioners,
)

__all__ = ["BUILTIN_CAPTIONERS", "PROMPTS", "CaptionerParams", "resolve_captioners"]
