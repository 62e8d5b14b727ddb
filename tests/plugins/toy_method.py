"""A method kind of one's own, in one module: the contract's example and its test.

Listed under the config's ``plugins:``, it runs through the whole workflow
without a change to rules/ or the library. The "model" is the per-pixel mean
and standard deviation of the normal train images (a Gaussian per pixel,
trained in closed form); its detectors are the squared z-score map and its
maximum, and the score tier raises the map to ``power`` and pools the top
``top_k`` pixels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from diffad.data.loader import image_batches
from diffad.methods import (
    AnomalyModel,
    MethodKind,
    MethodParams,
    Prediction,
    Scored,
    infer,
    register_method,
    score,
    train,
)
from diffad.scoring.fusion import top_k_mean


class ToyParams(MethodParams):
    floor: float = train(0.05, "minimum standard deviation per pixel", gt=0)
    blur: int = infer(1, "box blur of the input, pixels", ge=1)
    power: float = score(1.0, "exponent applied to the map", gt=0)
    top_k: int = score(1, "image score: mean of the top k pixels", ge=1)


class ToyModel(AnomalyModel):
    def fit(self, train_rows: pd.DataFrame, session) -> pd.DataFrame:
        images = torch.cat(list(image_batches(train_rows["image_path"].tolist(), self.runtime, 8)))
        self.mean = images.mean(dim=0)
        self.std = images.std(dim=0).clamp_min(self.params.floor)
        return pd.DataFrame({"step": [0], "loss": [float(self.std.mean())]})

    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        k = self.params.blur
        if k > 1:
            images = torch.nn.functional.avg_pool2d(images, k, stride=1, padding=k // 2,
                                                    count_include_pad=False)
            images = images[..., :self.mean.shape[-2], :self.mean.shape[-1]]
        z = ((images - self.mean) / self.std).pow(2).mean(dim=1)
        return Prediction(scores={"max": z.flatten(1).amax(1).numpy()}, maps={"z": z.numpy()})

    def save_networks(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean, "std": self.std}, str(Path(folder) / "gaussian.safetensors"))

    def load_networks(self, folder: Path) -> None:
        state = load_file(str(Path(folder) / "gaussian.safetensors"))
        self.mean, self.std = state["mean"], state["std"]

    def num_parameters(self) -> int:
        return 2 * self.mean.numel()


@register_method
class Toy(MethodKind):
    kind = "toy"
    Params = ToyParams
    model = ToyModel

    @classmethod
    def score(cls, params: ToyParams, outputs) -> Scored:
        maps = outputs.map("z") ** params.power
        return Scored(top_k_mean(maps, params.top_k), maps)
