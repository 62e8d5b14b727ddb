"""The smallest stand-in of InternVL2's chat call path that the caption stage drives.

InternVL2's modelling code lives in its hub repositories (``trust_remote_code``)
and cannot be had offline, so this module rebuilds, from real transformers
parts, the path ``batch_chat`` -> ``generate`` -> ``language_model.generate``
as InternVL2's ``InternVLChatModel`` runs it:

- the language model is an InternLM2-shaped causal LM (Llama's decoder with its
  own ``output`` head) that generates through ``GenerationMixin``, as the remote
  ``InternLM2ForCausalLM`` does on the transformers < 4.52 it needs, and whose
  ``prepare_inputs_for_generation`` hands the network only the inputs it knows
  (InternVL's ``generate`` also passes ``return_dict`` and
  ``output_hidden_states``, which the remote one drops too);
- the chat model embeds the prompt, puts the vision features (a CLIP ViT,
  pixel-shuffled by 0.5 and projected by ``mlp1``) in place of the
  ``<IMG_CONTEXT>`` tokens, and calls ``language_model.generate`` with
  ``inputs_embeds``, ``use_cache=True`` and the caller's generation settings;
- ``batch_chat`` wraps each question in the InternLM2 chat template, expands
  ``<image>`` to ``<img>`` + num_image_token x tiles ``<IMG_CONTEXT>`` + ``</img>``,
  pads on the left, stops at the template's separator and cuts the answers there.

What it does not cover: the remote InternLM2's own attention, rotary embedding
and legacy tuple KV cache (the reason it needs transformers < 4.52: measured
with the authors' code, see :func:`diffad.captions.families.check_internvl_transformers`;
this stand-in uses transformers' Cache objects), InternViT, the real tokenizer's
special-token ids, the conversation templates module, and upstream's device
handling (some versions move the inputs with ``.cuda()``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    GenerationMixin,
    LlamaConfig,
    LlamaModel,
    LlamaPreTrainedModel,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from diffad.weights.tiny import minilm_tokenizer

#: InternVL's image tokens and InternLM2's chat markers.
IMAGE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>")
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
SEPARATOR = "<|im_end|>"
TILE = 32


class InternLM2StyleForCausalLM(LlamaPreTrainedModel, GenerationMixin):
    """A decoder with an ``output`` head that generates."""

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def prepare_inputs_for_generation(self, input_ids, cache=None, attention_mask=None,
                                      inputs_embeds=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(
            input_ids, cache=cache, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            **kwargs)
        for unknown in ("return_dict", "output_hidden_states"):
            inputs.pop(unknown, None)
        if attention_mask is not None:
            # Positions count a row's own tokens, not its left padding (as InternLM2's).
            positions = attention_mask.long().cumsum(-1) - 1
            positions.masked_fill_(attention_mask == 0, 1)
            new = inputs.get("inputs_embeds")
            length = new.shape[1] if new is not None else inputs["input_ids"].shape[1]
            inputs["position_ids"] = positions[:, -length:]
        return inputs

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, cache_position=None,
                **kwargs) -> CausalLMOutputWithPast:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, cache=cache, inputs_embeds=inputs_embeds,
                            use_cache=use_cache, cache_position=cache_position)
        return CausalLMOutputWithPast(logits=self.output(hidden.last_hidden_state),
                                      cache=hidden.cache)


class StandInChatConfig(PretrainedConfig):
    model_type = "diffad_internvl_standin"


class StandInInternVLChat(PreTrainedModel):
    """Vision tower + projector + language model, asked through ``batch_chat``."""

    config_class = StandInChatConfig
    main_input_name = "pixel_values"

    def __init__(self, config: StandInChatConfig, vision_model: nn.Module,
                 language_model: nn.Module):
        super().__init__(config)
        self.vision_model, self.language_model = vision_model, language_model
        vision = vision_model.config
        self.num_image_token = int((TILE // vision.patch_size) ** 2 * 0.25)
        shuffled = vision.hidden_size * 4  # pixel shuffle by 0.5: 2 x 2 patches per token
        width = language_model.config.hidden_size
        self.mlp1 = nn.Sequential(nn.LayerNorm(shuffled), nn.Linear(shuffled, width),
                                  nn.GELU(), nn.Linear(width, width))
        self.img_context_token_id: int | None = None

    def extract_feature(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.vision_model(pixel_values=pixel_values).last_hidden_state[:, 1:]
        n, side = len(tokens), int(tokens.shape[1] ** 0.5)
        grid = tokens.reshape(n, side // 2, 2, side // 2, 2, -1).permute(0, 1, 3, 2, 4, 5)
        return self.mlp1(grid.reshape(n, (side // 2) ** 2, -1))

    @torch.no_grad()
    def generate(self, pixel_values, input_ids, attention_mask, generation_config=None,
                 output_hidden_states=None, return_dict=None, **generate_kwargs):
        embeds = self.language_model.get_input_embeddings()(input_ids)
        flat = embeds.reshape(-1, embeds.shape[-1])
        selected = input_ids.reshape(-1) == self.img_context_token_id
        flat[selected] = self.extract_feature(pixel_values).reshape(-1, flat.shape[-1])
        return self.language_model.generate(
            inputs_embeds=flat.reshape(embeds.shape), attention_mask=attention_mask,
            generation_config=generation_config, output_hidden_states=output_hidden_states,
            return_dict=return_dict, use_cache=True, **generate_kwargs)

    def batch_chat(self, tokenizer, pixel_values, questions, generation_config,
                   num_patches_list=None):
        self.img_context_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
        queries = []
        for question, patches in zip(questions, num_patches_list, strict=True):
            query = (f"<|im_start|>system\nYou are a helpful assistant.{SEPARATOR}\n"
                     f"<|im_start|>user\n{question}{SEPARATOR}\n<|im_start|>assistant\n")
            image = "<img>" + "<IMG_CONTEXT>" * self.num_image_token * patches + "</img>"
            queries.append(query.replace("<image>", image, 1))
        tokenizer.padding_side = "left"
        inputs = tokenizer(queries, return_tensors="pt", padding=True)
        generation_config["eos_token_id"] = tokenizer.convert_tokens_to_ids(SEPARATOR)
        out = self.generate(pixel_values=pixel_values,
                            input_ids=inputs["input_ids"].to(self.device),
                            attention_mask=inputs["attention_mask"].to(self.device),
                            **generation_config)
        answers = tokenizer.batch_decode(out, skip_special_tokens=True)
        return [answer.split(SEPARATOR)[0].strip() for answer in answers]


def standin_internvl_chat() -> tuple[StandInInternVLChat, object]:
    """(chat model in eval mode with seeded random weights, its tokenizer)."""
    tokenizer = minilm_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [*IMAGE_TOKENS, *CHAT_TOKENS]})
    torch.manual_seed(0)
    vision = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=TILE, patch_size=8))
    language = InternLM2StyleForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(SEPARATOR)))
    model = StandInInternVLChat(StandInChatConfig(force_image_size=TILE), vision, language)
    return model.eval(), tokenizer


__all__ = ["InternLM2StyleForCausalLM", "StandInInternVLChat", "standin_internvl_chat"]
