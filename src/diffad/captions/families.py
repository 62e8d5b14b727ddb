"""How each family of vision-language model is loaded and asked for captions.

``blip2``
    ``Blip2ForConditionalGeneration`` (BLIP-2 with OPT or Flan-T5): the prompt
    goes to the processor beside the image.
``image_text_to_text``
    transformers-native chat VLMs (``DeepseekVLForConditionalGeneration``,
    ``InternVLForConditionalGeneration`` of the ``-hf`` repos, LLaVA...): the
    prompt goes through the processor's chat template as one user turn.
``internvl_chat``
    OpenGVLab's InternVL2 with its own modelling code (``trust_remote_code``):
    dynamic tiles (:mod:`diffad.captions.tiling`) and the model's ``batch_chat``.
    Its chat model generates through its InternLM2's ``generate``, which only
    transformers < 4.52 gives it: the caption stage of these captioners runs in
    ``envs/internvl.yaml`` (:func:`check_internvl_transformers` says why).

Every family decodes greedily unless ``num_beams`` > 1, never samples, and
returns one stripped caption per image, in the order of the images.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from diffad.captions.params import CaptionerParams
from diffad.captions.tiling import dynamic_tiles, tiles_to_tensor
from diffad.device import mixed_precision_dtype
from diffad.errors import ConfigError
from diffad.runtime import Runtime
from diffad.weights import load_transformers

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype of a captioner's ``dtype`` setting on ``device`` (``auto``: bfloat16
    on CUDA with bf16 support, float16 on other CUDA, float32 on the CPU)."""
    if dtype == "auto":
        return mixed_precision_dtype(device) or torch.float32
    return _DTYPES[dtype]


#: The first transformers on which InternVL2's remote code cannot generate (see
#: :func:`check_internvl_transformers`).
INTERNVL_BREAKS_AT = (4, 52)


def _release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string ("5.0.0.dev0" -> (5, 0))."""
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def dtype_argument(version: str) -> str:
    """``from_pretrained``'s name for the weights' dtype: ``dtype`` from transformers 4.56,
    ``torch_dtype`` before (the InternVL2 environment's transformers < 4.52)."""
    return "dtype" if _release(version) >= (4, 56) else "torch_dtype"


def check_internvl_transformers(version: str, captioner: str = "internvl_chat") -> None:
    """Refuse to load InternVL2's remote code on a transformers it cannot generate with.

    Its ``InternLM2ForCausalLM`` subclasses ``PreTrainedModel`` alone and keeps a legacy
    tuple KV cache. transformers 4.52 dropped ``GenerationMixin`` from ``PreTrainedModel``
    (``batch_chat`` -> ``language_model.generate`` raises AttributeError), and giving the
    class ``GenerationMixin`` back does not suffice: measured on the authors' InternLM2 code
    (tiny config), 4.49.0 and 4.51.3 generate (greedy with the cache = without it; 5
    beams), 4.57.3 and 5.25.0 fail at the second token, their generation loop no longer
    carrying that cache. The caption stage of these captioners therefore runs in
    ``envs/internvl.yaml`` (transformers < 4.52): ``--software-deployment-method conda``.
    Raised before the 16 GB of weights load, naming the way out.
    """
    if _release(version) >= INTERNVL_BREAKS_AT:
        raise ConfigError(
            f"captioner {captioner!r} runs InternVL2's own modelling code, which cannot "
            f"generate on transformers {version} (it needs < "
            f"{'.'.join(map(str, INTERNVL_BREAKS_AT))}): run the caption stage in "
            f"envs/internvl.yaml (snakemake --software-deployment-method conda), or in an "
            f"environment with pip install 'transformers>=4.45,<4.52'")


def load_captioner(params: CaptionerParams, runtime: Runtime) -> tuple[Any, Any]:
    """(model in eval mode on the runtime's device, its processor or tokenizer), loaded
    offline from the weights cache in the captioner's dtype."""
    import transformers

    if params.family == "internvl_chat":
        check_internvl_transformers(transformers.__version__, params.weights)
    dtype = {dtype_argument(transformers.__version__): resolve_dtype(params.dtype,
                                                                     runtime.device)}
    model, processor = load_transformers(params.weights, runtime.weights_root, **dtype)
    if processor is None:
        raise ValueError(f"weights {params.weights!r} have no processor or tokenizer; a "
                         f"captioner needs one")
    return model.to(runtime.device).eval(), processor


def _generate_kwargs(params: CaptionerParams) -> dict[str, Any]:
    return {"max_new_tokens": params.max_new_tokens, "min_new_tokens": params.min_new_tokens,
            "num_beams": params.num_beams, "do_sample": False}


def _check_length(model: Any, prompt_tokens: int, params: CaptionerParams) -> None:
    """A decoder with learned positions cannot run past them: say so before it indexes out
    of range (a T5 decoder has no such limit)."""
    text = getattr(model.config, "text_config", model.config)
    limit = getattr(text, "max_position_embeddings", None)
    decoder_only = getattr(model.config, "use_decoder_only_language_model", True)
    if limit is not None and decoder_only and prompt_tokens + params.max_new_tokens > limit:
        raise ConfigError(
            f"max_new_tokens: {params.max_new_tokens} new tokens after the {prompt_tokens} "
            f"of the prompt exceed the language model's {limit} positions; lower it")


def _decode(processor: Any, tokens: torch.Tensor) -> list[str]:
    return [text.strip() for text in processor.batch_decode(tokens, skip_special_tokens=True)]


@torch.inference_mode()
def _blip2(model: Any, processor: Any, images: list[Image.Image], prompt: str,
           params: CaptionerParams, device: torch.device) -> list[str]:
    # padding="longest" is padding=True without the warning some tokenizers give when their
    # config carries a max_length; the prompts are identical, so nothing is padded anyway.
    inputs = processor(images=images, text=[prompt] * len(images), return_tensors="pt",
                       padding="longest")
    # BatchFeature.to casts only the floating tensors (pixel_values), not the token ids.
    inputs = inputs.to(device, dtype=resolve_dtype(params.dtype, device))
    _check_length(model, inputs["input_ids"].shape[1], params)
    out = model.generate(**inputs, **_generate_kwargs(params))
    if model.config.use_decoder_only_language_model:
        # OPT continues the prompt: its tokens lead the output. T5 decodes from scratch.
        out = out[:, inputs["input_ids"].shape[1]:]
    return _decode(processor, out)


@torch.inference_mode()
def _image_text_to_text(model: Any, processor: Any, images: list[Image.Image], prompt: str,
                        params: CaptionerParams, device: torch.device) -> list[str]:
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": prompt}]}]
    chat = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # A decoder-only model continues the last token of each row: pad on the left.
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=images, text=[chat] * len(images), return_tensors="pt",
                       padding="longest")
    inputs = inputs.to(device, dtype=resolve_dtype(params.dtype, device))
    _check_length(model, inputs["input_ids"].shape[1], params)
    out = model.generate(**inputs, **_generate_kwargs(params))
    return _decode(processor, out[:, inputs["input_ids"].shape[1]:])


@torch.inference_mode()
def _internvl_chat(model: Any, tokenizer: Any, images: list[Image.Image], prompt: str,
                   params: CaptionerParams, device: torch.device) -> list[str]:
    """InternVL2's own ``batch_chat``, as its model card runs it. Tested against a stand-in
    of its call path (tests/internvl_standin.py): InternVL's remote code is not available
    offline."""
    size = getattr(model.config, "force_image_size", None)
    if size is not None and size != params.tile_size:
        raise ValueError(f"tile_size is {params.tile_size} but the model was trained on "
                         f"{size} px tiles (config force_image_size)")
    per_image = [tiles_to_tensor(dynamic_tiles(image, params.tile_size,
                                               max_tiles=params.max_tiles),
                                 tile_size=params.tile_size)
                 for image in images]
    pixel_values = torch.cat(per_image).to(device, resolve_dtype(params.dtype, device))
    answers = model.batch_chat(
        tokenizer, pixel_values, num_patches_list=[len(t) for t in per_image],
        questions=["<image>\n" + prompt] * len(images),
        generation_config=_generate_kwargs(params),
    )
    return [answer.strip() for answer in answers]


_FAMILIES = {"blip2": _blip2, "image_text_to_text": _image_text_to_text,
             "internvl_chat": _internvl_chat}


def generate_captions(family: str, model: Any, processor: Any, images: list[Image.Image],
                      prompt: str, params: CaptionerParams, device: torch.device) -> list[str]:
    """One caption per image of ``images`` (RGB, any size), asked in one batch.

    ``processor`` is what :func:`load_captioner` returned (the tokenizer for
    ``internvl_chat``). Pixel inputs are cast to the dtype the model was loaded in
    (``params.dtype``), not to ``model.dtype``: BLIP-2 loaded in float16 keeps its
    Q-Former in float32, and ``model.dtype`` then says float32 for an fp16 vision tower.
    """
    if family not in _FAMILIES:
        raise ValueError(f"unknown captioner family {family!r}; known: {', '.join(_FAMILIES)}")
    if not images:
        return []
    captions = _FAMILIES[family](model, processor, images, prompt, params, device)
    if len(captions) != len(images):
        raise RuntimeError(f"{family}: {len(captions)} captions for {len(images)} images")
    return captions


__all__ = ["INTERNVL_BREAKS_AT", "check_internvl_transformers", "dtype_argument",
           "generate_captions", "load_captioner", "resolve_dtype"]
