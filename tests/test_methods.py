"""Method registry, parameter tiers and bounds, shared jobs, and PatchCore on real images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffad.errors import ConfigError
from diffad.methods import (
    build_model,
    method_kinds,
    params_of,
    resolve_method,
    tier_values,
)
from diffad.methods.patchcore import PatchCore
from diffad.methods.patchcore.coreset import greedy_coreset
from diffad.methods.patchcore.model import nearest_distances
from diffad.plan import method_set
from diffad.runtime import Runtime
from diffad.scoring.outputs import Outputs, score_table, write_maps


def test_kind_alone_is_a_valid_variant_with_defaults():
    resolved = resolve_method("pc", {"kind": "patchcore"})
    assert resolved["kind"] == "patchcore"
    assert resolved["backbone"] == "wide_resnet50_2"
    assert resolved["sigma"] == 4.0
    assert resolved["reference"] == "pc"
    assert resolved["protocol"] == "unified"


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
        ({"kind": "patchcore", "infer_batch_size": 2.5},
         r"methods\.v\.infer_batch_size: expected int"),
        ({"kind": "patchcore", "sigma": True}, r"methods\.v\.sigma: expected float"),
        ({"kind": "patchcore", "coreset_ratio": -0.5},
         r"methods\.v\.coreset_ratio: must be > 0, got -0\.5"),
        ({"kind": "patchcore", "coreset_ratio": 1.5}, r"methods\.v\.coreset_ratio: must be <= 1"),
        ({"kind": "patchcore", "layers": [9]}, r"methods\.v\.layers: .*stage indices"),
        ({"kind": "patchcore", "patch_neighbors": 0}, r"methods\.v\.patch_neighbors: must be >= 1"),
        ({"kind": "patchcore", "infer_batch_size": 0},
         r"methods\.v\.infer_batch_size: must be >= 1"),
        ({"kind": "patchcore", "backbone": "resnet_9000"}, r"methods\.v\.backbone: .*resnet_9000"),
        ({"kind": "patchcore", "protocol": "mine"}, r"methods\.v\.protocol: 'mine' is not one of"),
    ],
)
def test_bad_method_config_names_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        resolve_method("v", cfg)


def test_patchcore_is_registered():
    assert {"patchcore", "latent_inversion"} <= set(method_kinds())


def test_tiers_decide_which_jobs_variants_share():
    methods = {
        "a": {"kind": "patchcore", "coreset_ratio": 0.1},
        "a_smooth": {"kind": "patchcore", "coreset_ratio": 0.1, "sigma": 2.0},  # score tier
        "a_knn": {"kind": "patchcore", "coreset_ratio": 0.1, "patch_neighbors": 3},  # infer
        "b": {"kind": "patchcore", "coreset_ratio": 0.2},  # train tier
    }
    found = method_set(methods)
    assert found.trained_by == {"a": "a", "a_smooth": "a", "a_knn": "a", "b": "b"}
    assert found.inferred_by == {"a": "a", "a_smooth": "a", "a_knn": "a_knn", "b": "b"}
    assert set(tier_values(found.resolved["a"], "train")) == {
        "kind", "backbone", "layers", "embed_dim", "coreset_ratio", "projection_dim",
        "multi_class", "center_crop", "seed"}
    assert "sigma" not in tier_values(found.resolved["a"], "train", "infer")


def test_config_checks_that_span_variants():
    grids = {"g": {"name": "pc_{sigma}", "base": {"kind": "patchcore"}, "vary": {"sigma": [1.0]}}}
    with pytest.raises(ConfigError, match=r"also named in methods: \['pc_1.0'\]"):
        method_set({"pc_1.0": {"kind": "patchcore"}}, grids)
    with pytest.raises(ConfigError, match=r"best_of\.best names variants .*\['nope'\]"):
        method_set({"a": {"kind": "patchcore"}}, {}, {"best": ["a", "nope"]})
    assert set(method_set({"a": {"kind": "patchcore"}}, grids).resolved) == {"a", "pc_1.0"}


def test_seeds_run_a_variant_once_per_seed():
    methods = {"pc": {"kind": "patchcore", "per_category": {"a": {"sigma": 2.0}}},
               "pc_smooth": {"kind": "patchcore", "sigma": 8.0}}
    found = method_set(methods, seeds={"pc": [0, 1]})
    assert found.seed_groups == {"pc": ["pc_seed0", "pc_seed1"]}
    assert set(found.resolved) == {"pc_seed0", "pc_seed1", "pc_smooth"}
    assert found.shown == ["pc_seed0", "pc_smooth"]
    run = found.resolved["pc_seed1"]
    assert run["seed"] == 1 and run["reference"] == "pc" and run["per_category"]
    # The seed is a train setting: each run trains (and infers) its own model.
    assert found.trained_by["pc_seed1"] == "pc_seed1"
    assert found.trained_by["pc_smooth"] == "pc_smooth"  # seed None is a setting of its own
    with pytest.raises(ConfigError, match=r"seeds\.nope: 'nope' is not a configured"):
        method_set(methods, seeds={"nope": [0, 1]})
    with pytest.raises(ConfigError, match=r"seeds\.pc: the seeds must be distinct"):
        method_set(methods, seeds={"pc": [1, 1]})
    with pytest.raises(ConfigError, match=r"best_of\.b: \['pc'\] run once per seed"):
        method_set(methods, best_of={"b": ["pc", "pc_smooth"]}, seeds={"pc": [0, 1]})


def test_a_variant_seed_overrides_the_runtime_seed(tmp_path):
    from diffad.stages import seeded

    runtime = Runtime(device=torch.device("cpu"), weights_root=tmp_path, image_size=32, seed=7)
    assert seeded(runtime, resolve_method("a", {"kind": "patchcore"})).seed == 7
    assert seeded(runtime, resolve_method("a", {"kind": "patchcore", "seed": 2})).seed == 2


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


def test_patchcore_scores_and_localises_a_defect(weights_root, tmp_path):
    runtime = Runtime(device=torch.device("cpu"), weights_root=weights_root, image_size=64)
    resolved = resolve_method("pc", {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                                     "coreset_ratio": 0.5})
    model = build_model(resolved, runtime)
    # fit() reads files; feed it tensors through the same embedding path instead.
    features = model.embed(_blob_images(8, 64, blob=False, seed=0))
    patches = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    model.memory_bank = patches[greedy_coreset(patches, 0.5, 128, 0)]
    normal = model.predict(_blob_images(3, 64, blob=False, seed=1), None)
    defect = model.predict(_blob_images(3, 64, blob=True, seed=2), None)
    assert set(defect.scores) == {"max", "reweighted"} and set(defect.maps) == {"patch"}
    assert normal.maps["patch"].shape == (3, 64, 64) and defect.scores["max"].shape == (3,)
    assert defect.scores["max"].min() > normal.scores["max"].max()
    # Eq. 7's weight lies in (0, 1): the reweighted score shrinks s*.
    assert (defect.scores["reweighted"] < defect.scores["max"]).all()
    assert (defect.scores["reweighted"] > 0).all()

    # The score tier smooths the stored map; its peak stays on the defect.
    rows = pd.DataFrame({"image_path": [f"{i}" for i in range(3)], "category": "c",
                         "defect_type": "blob", "label": 1, "mask_path": None})
    write_maps(defect.maps, tmp_path / "maps.safetensors")
    outputs = Outputs(score_table(rows, defect.scores), str(tmp_path / "maps.safetensors"))
    scored = PatchCore.score(params_of(resolved), outputs)
    peak = np.unravel_index(scored.maps[0].argmax(), (64, 64))
    assert 14 <= peak[0] <= 38 and 30 <= peak[1] <= 54
    np.testing.assert_allclose(scored.scores, defect.scores["max"])

    model.save_networks(tmp_path)
    again = build_model(resolved, runtime)
    again.load_networks(tmp_path)
    np.testing.assert_allclose(again.predict(_blob_images(3, 64, True, 2), None).scores["max"],
                               defect.scores["max"], rtol=1e-5)
    assert PatchCore.nfe(params_of(resolved)) == 0 and model.num_parameters() > 100_000


def test_gaussian_smoothing_matches_torchvision():
    from torchvision.transforms.functional import gaussian_blur

    from diffad.scoring.fusion import gaussian_smooth

    maps = np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)
    expected = gaussian_blur(torch.from_numpy(maps)[:, None], kernel_size=33, sigma=4.0)[:, 0]
    np.testing.assert_allclose(gaussian_smooth(maps, 4.0), expected.numpy(), atol=1e-5)
