"""Method registry, parameter checks and PatchCore on real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffad.errors import ConfigError
from diffad.methods import Runtime, build_method, method_kinds, resolve_method
from diffad.methods.patchcore import greedy_coreset, nearest_distances


def test_kind_alone_is_a_valid_variant_with_defaults():
    resolved = resolve_method("pc", {"kind": "patchcore"})
    assert resolved["kind"] == "patchcore"
    assert resolved["backbone"] == "wide_resnet50_2"
    assert resolved["sigma"] == 4.0
    assert resolved["reference"] == "pc"


def test_reference_name_is_kept():
    assert resolve_method("pc_small", {"kind": "patchcore", "reference": "patchcore"})[
        "reference"] == "patchcore"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"kind": "nope"}, r"methods\.v\.kind: unknown method kind 'nope'"),
        ({"backbone": "x"}, r"methods\.v: needs a 'kind'"),
        ({"kind": "patchcore", "coreset": 0.1},
         r"methods\.v: unknown parameter\(s\) \['coreset'\]"),
        ({"kind": "patchcore", "coreset_ratio": "a lot"}, r"methods\.v\.coreset_ratio: expected"),
        ({"kind": "patchcore", "batch_size": 2.5}, r"methods\.v\.batch_size: expected int"),
        ({"kind": "patchcore", "sigma": True}, r"methods\.v\.sigma: expected float"),
    ],
)
def test_bad_method_config_names_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        resolve_method("v", cfg)


def test_patchcore_is_registered():
    assert "patchcore" in method_kinds()


def test_greedy_coreset_covers_the_space_better_than_random():
    generator = torch.Generator().manual_seed(0)
    # Two dense clusters and a few far outliers: k-center must pick the outliers.
    points = torch.cat([torch.randn(500, 8, generator=generator),
                        torch.randn(500, 8, generator=generator) + 10,
                        torch.randn(5, 8, generator=generator) * 0.1 + 50])
    chosen = greedy_coreset(points, ratio=0.02, projection_dim=0, seed=0)
    assert len(chosen) == 21 and len(set(chosen.tolist())) == 21
    assert (chosen >= 1000).any()
    radius = nearest_distances(points, points[chosen]).max()
    random_pick = torch.randperm(len(points), generator=generator)[:21]
    assert radius < nearest_distances(points, points[random_pick]).max()
    assert torch.equal(chosen, greedy_coreset(points, 0.02, 0, seed=0))


def test_nearest_distances_match_brute_force():
    generator = torch.Generator().manual_seed(1)
    query, bank = torch.randn(300, 5, generator=generator), torch.randn(40, 5, generator=generator)
    expected = torch.cdist(query, bank).sort(dim=1).values[:, :3].mean(dim=1)
    torch.testing.assert_close(nearest_distances(query, bank, k=3, chunk=64), expected)


def _blob_images(n: int, size: int, blob: bool, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = []
    for _ in range(n):
        stripes = 0.5 + 0.25 * np.sin(2 * np.pi * (xx + rng.uniform(0, 8)) / 8)
        img = np.stack([stripes, stripes * 0.9, stripes * 0.8], axis=-1)
        img += rng.normal(0, 0.02, img.shape)
        if blob:
            img[20:32, 36:48] = [0.9, 0.1, 0.1]
        images.append(np.clip(img, 0, 1).transpose(2, 0, 1))
    return torch.tensor(np.stack(images), dtype=torch.float32)


def test_patchcore_scores_and_localises_a_defect(weights_root, tmp_path, monkeypatch):
    runtime = Runtime(device=torch.device("cpu"), weights_root=weights_root, image_size=64)
    params = resolve_method("pc", {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                                   "coreset_ratio": 0.5})
    method = build_method(params, runtime)
    train = _blob_images(8, 64, blob=False, seed=0)
    # fit() reads files; feed it tensors through the same embedding path instead.
    features = method.embed(train)
    patches = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    method.memory_bank = patches[greedy_coreset(patches, 0.5, 128, 0)]
    normal = method.predict(_blob_images(3, 64, blob=False, seed=1))
    defect = method.predict(_blob_images(3, 64, blob=True, seed=2))
    assert normal.maps.shape == (3, 64, 64) and defect.scores.shape == (3,)
    assert defect.scores.min() > normal.scores.max()
    peak = np.unravel_index(defect.maps[0].argmax(), (64, 64))
    assert 14 <= peak[0] <= 38 and 30 <= peak[1] <= 54

    method.save(tmp_path)
    again = build_method(params, runtime)
    again.load(tmp_path)
    np.testing.assert_allclose(again.predict(_blob_images(3, 64, True, 2)).scores, defect.scores,
                               rtol=1e-5)
    assert method.nfe == 0 and method.num_parameters() > 100_000
