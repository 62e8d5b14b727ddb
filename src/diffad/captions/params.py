"""Captioner settings: the named prompts, the parameters of one captioner, the built-ins.

The ``captioners:`` block of the config maps a name (a folder name and a
Snakemake wildcard value) to a :class:`CaptionerParams` entry; the built-ins of
:data:`BUILTIN_CAPTIONERS` are always there, and an entry may start from one
with ``base:``::

    captioners:
      internvl_short:
        base: internvl2_8b
        max_new_tokens: 256
      mine:
        family: blip2
        weights: blip2_flan_t5_xl
        prompt: "Describe the texture of the object."

A bad value fails when the config is read, naming the key
(``captioners.mine.batch_size: must be >= 1, got 0``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diffad.settings import NAME_PATTERN, TransformersWeights, resolve_named

#: Named prompts; a captioner's ``prompt`` is one of these names or literal text.
PROMPTS: dict[str, str] = {
    # Paper 003 (VLMDiff), P_D for the industrial datasets.
    "paper": "Describe the main object in detail.",
    # Paper 003, the prompt for COCO-AD, whose images have no single main object.
    "paper_coco": "Describe the visual features of image in detail.",
    # The authors' code (captioner.py, prompt `pd`), which every command of their README runs.
    "authors": "Describe the visual features of image in detail with a focus on the main "
               "object, with around 60 words and maybe 4 or 5 sentences.",
    "authors_coco": "Describe the visual features of image in detail, with around 60 words "
                    "and maybe 4 or 5 sentences.",
}

#: How a model is asked for a caption (:mod:`diffad.captions.families`).
Family = Literal["blip2", "internvl_chat", "image_text_to_text"]


class CaptionerParams(BaseModel):
    """One captioner: a vision-language model, how it is asked, and its decoding."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)

    family: Family = Field(
        description="how the model is asked: `blip2` (Blip2ForConditionalGeneration), "
        "`internvl_chat` (InternVL2's own code, `batch_chat`) or `image_text_to_text` "
        "(transformers-native chat VLMs: DeepSeek-VL, InternVL -hf)")
    weights: TransformersWeights = Field(
        description="registered transformers weights source of the model and its processor")
    prompt: str = Field(
        "paper", min_length=1,
        description=f"a named prompt ({', '.join(PROMPTS)}) or the prompt's own text")
    max_new_tokens: int = Field(256, ge=1, description="longest caption, in tokens")
    min_new_tokens: int = Field(
        1, ge=0, description="shortest caption, in tokens (LAVIS's `min_length=1`: never an "
        "empty caption)")
    num_beams: int = Field(1, ge=1, description="beam search width; 1: greedy decoding")
    batch_size: int = Field(8, ge=1, description="images per generate call")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="weights and inputs; auto: bfloat16 on CUDA with bf16 support, "
        "float16 on other CUDA, float32 on the CPU")
    max_tiles: int = Field(
        12, ge=1, description="internvl_chat: most 448 px tiles per image (plus a thumbnail)")
    tile_size: int = Field(448, ge=16, description="internvl_chat: side of a tile, in pixels")

    @property
    def prompt_text(self) -> str:
        """The text the model is asked: the named prompt's, or ``prompt`` itself."""
        return PROMPTS.get(self.prompt, self.prompt)


#: The built-in captioners (config entries); all decode greedily.
BUILTIN_CAPTIONERS: dict[str, dict[str, Any]] = {
    # Paper 003's captioner; 1024 new tokens as the authors' code allows.
    "internvl2_8b": {"family": "internvl_chat", "weights": "internvl2_8b", "prompt": "paper",
                     "max_new_tokens": 1024, "dtype": "bfloat16", "batch_size": 8},
    # The same with the prompt of the authors' code (about 60 words).
    "internvl2_8b_long": {"family": "internvl_chat", "weights": "internvl2_8b",
                          "prompt": "authors", "max_new_tokens": 1024, "dtype": "bfloat16",
                          "batch_size": 8},
    # The authors ran BLIP-2 FLAN-T5-XXL through LAVIS with its generate() defaults: 5
    # beams, at most 30 tokens, at least 1 (the paper: BLIP-2 "generates very short
    # descriptions").
    "blip2": {"family": "blip2", "weights": "blip2_flan_t5_xxl", "prompt": "paper",
              "max_new_tokens": 30, "min_new_tokens": 1, "num_beams": 5},
    "deepseek_vl": {"family": "image_text_to_text", "weights": "deepseek_vl_1_3b",
                    "prompt": "paper", "max_new_tokens": 256},
    # The embedded default's: a tiny random BLIP-2 writing noise captions, in seconds.
    "tiny_blip2": {"family": "blip2", "weights": "tiny_blip2", "prompt": "paper",
                   "max_new_tokens": 16, "batch_size": 16},
}


def resolve_captioners(block: dict[str, Any] | None) -> dict[str, CaptionerParams]:
    """The built-in captioners plus the config's ``captioners:`` block (name -> entry).

    An entry with ``base: <built-in>`` starts from that built-in's values and
    overrides some keys; an entry named like a built-in replaces it.

    Raises:
        ConfigError: a bad name, an unknown base, or a bad value (naming
            ``captioners.<name>.<key>``).
    """
    return resolve_named(block, BUILTIN_CAPTIONERS, CaptionerParams, "captioners")


__all__ = ["BUILTIN_CAPTIONERS", "PROMPTS", "CaptionerParams", "Family", "NAME_PATTERN",
           "resolve_captioners"]
