"""PatchCore's greedy k-center coreset: the fast selection equals the textbook loop."""

from __future__ import annotations

import math

import pytest
import torch
from tqdm.auto import tqdm

from diffad.methods.patchcore import coreset
from diffad.methods.patchcore.coreset import greedy_coreset


def reference_coreset(
    features: torch.Tensor, ratio: float, projection_dim: int, seed: int
) -> torch.Tensor:
    """``greedy_coreset`` as methods/patchcore.py had it before coreset.py, verbatim."""
    n, dim = features.shape
    k = max(1, min(n, math.ceil(n * ratio)))
    if k == n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    reduced = features
    if 0 < projection_dim < dim:
        projection = torch.randn(dim, projection_dim, generator=generator)
        reduced = features @ (projection / math.sqrt(projection_dim)).to(features.device)
    start = int(torch.randint(n, (1,), generator=generator))
    selected = torch.empty(k, dtype=torch.long)
    min_dist = torch.full((n,), float("inf"), device=features.device)
    index = start
    for i in tqdm(range(k), desc="coreset", mininterval=2.0, leave=False):
        selected[i] = index
        dist = (reduced - reduced[index]).pow(2).sum(dim=1)
        min_dist = torch.minimum(min_dist, dist)
        index = int(min_dist.argmax())
    return selected


def make_features(kind: str, n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "gauss":
        return torch.randn(n, dim, generator=g)
    if kind == "relu":  # non-negative with a large common mean, like CNN features
        return torch.relu(torch.randn(n, dim, generator=g) + 0.5) * 4
    if kind == "clusters":
        centres = torch.randn(40, dim, generator=g) * 4
        spread = torch.rand(n, 1, generator=g) ** 2
        return centres[torch.randint(40, (n,), generator=g)] + spread * torch.randn(
            n, dim, generator=g)
    if kind == "ties":  # few distinct values: many exactly equal distances
        return torch.randint(0, 3, (n, dim), generator=g).float()
    raise ValueError(kind)


def assert_same(features: torch.Tensor, ratio: float, projection_dim: int, seed: int) -> None:
    # The textbook loop is thousands of small ops: on one thread it stays fast on a
    # busy machine, and its result does not depend on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = reference_coreset(features, ratio, projection_dim, seed)
    finally:
        torch.set_num_threads(threads)
    got = greedy_coreset(features, ratio, projection_dim, seed)
    assert got.dtype == torch.long and got.device.type == "cpu"
    assert torch.equal(got, expected), (
        f"first difference at step {int((got != expected).nonzero()[0])} of {len(expected)}")


@pytest.mark.parametrize(("kind", "n", "dim", "ratio", "projection_dim", "seed"), [
    ("gauss", 6000, 96, 0.1, 32, 0),  # projection, several blocks and catch-ups
    ("relu", 6000, 96, 0.1, 32, 1),
    ("clusters", 6000, 48, 0.1, 0, 2),  # no projection: projection_dim 0
    ("gauss", 3000, 16, 0.2, 16, 3),  # no projection: projection_dim == dim
    ("relu", 3000, 16, 0.2, 64, 4),  # no projection: projection_dim > dim
    ("ties", 3000, 8, 0.5, 0, 5),  # more rows asked than distinct points exist
    ("gauss", 700, 24, 0.5, 8, 6),  # fewer rows than 2 x ACTIVE: all rows active
])
def test_same_indices_as_textbook_loop(kind, n, dim, ratio, projection_dim, seed):
    assert_same(make_features(kind, n, dim, seed), ratio, projection_dim, seed)


@pytest.mark.parametrize("ratio", [1.0, 1.5, 1 - 1e-9, 0.9995, 1e-9, 1.5 / 2000, 2.5 / 2000])
def test_ratio_edge_cases(ratio):
    """k == n (arange), k == n - 1, k == 1 (the start row only), k == 2 and 3."""
    features = make_features("gauss", 2000, 12, 7)
    assert_same(features, ratio, 4, 7)
    k = max(1, min(2000, math.ceil(2000 * ratio)))
    assert len(greedy_coreset(features, ratio, 4, 7)) == k


def test_small_active_set_and_blocks(monkeypatch):
    """Tiny constants drive every path many times: short blocks, many catch-ups and
    levels, early stops in catch-ups, and floods of ties."""
    monkeypatch.setattr(coreset, "ACTIVE", 4)
    monkeypatch.setattr(coreset, "BLOCK", 8)
    monkeypatch.setattr(coreset, "WIDTH", 64)
    monkeypatch.setattr(coreset, "CHUNK", 64 * 64)
    for kind, seed in (("gauss", 8), ("clusters", 9), ("ties", 10)):
        assert_same(make_features(kind, 1500, 12, seed), 0.3, 0, seed)


def test_float64_and_seed_change_the_selection():
    features = make_features("relu", 2000, 20, 11).double()
    assert_same(features, 0.1, 0, 11)
    other = greedy_coreset(features, 0.1, 0, 12)
    assert not torch.equal(other, greedy_coreset(features, 0.1, 0, 11))


def test_non_contiguous_and_non_finite_use_the_textbook_loop():
    features = make_features("gauss", 40, 800, 13).T  # (800, 40), column-major
    assert_same(features, 0.1, 0, 13)
    features = make_features("gauss", 800, 40, 14)
    features[5, 3] = float("inf")
    assert_same(features, 0.1, 0, 14)


def test_bf16_matmul_setting_is_overridden_and_restored():
    backend = getattr(torch.backends.mkldnn, "matmul", None)
    if backend is None or not hasattr(backend, "fp32_precision"):
        pytest.skip("torch without per-backend fp32_precision")
    before = backend.fp32_precision
    backend.fp32_precision = "bf16"
    try:
        assert_same(make_features("relu", 3000, 64, 15), 0.1, 16, 15)
        assert backend.fp32_precision == "bf16"
    finally:
        backend.fp32_precision = before


def test_textbook_distance_on_gathered_rows_is_bit_identical():
    """The premise of the fast path: a row's textbook distance has the same bits
    whether computed on the whole bank or on a gathered subset of rows."""
    x = make_features("relu", 20000, 128, 16)
    rows = torch.randint(len(x), (1000,), generator=torch.Generator().manual_seed(0))
    for index in (0, 12345):
        full = (x - x[index]).pow(2).sum(dim=1)
        for part in (rows[:1], rows[:7], rows):
            gathered = (x.index_select(0, part) - x[torch.full_like(part, index)]).pow(2)
            assert torch.equal(gathered.sum(dim=1), full[part])


def test_coverage_picks_far_outliers_first():
    """k-center covers the space: isolated far points are chosen before any second
    point of the bulk, and the covering radius beats a random subset's."""
    g = torch.Generator().manual_seed(17)
    bulk = torch.randn(4000, 32, generator=g)
    directions = torch.linalg.qr(torch.randn(32, 6, generator=g)).Q.T  # 6 orthonormal rows
    features = torch.cat([bulk, 40 * directions])
    order = torch.randperm(len(features), generator=g)
    features = features[order]
    outliers = set(torch.argsort(order)[-6:].tolist())
    keep = greedy_coreset(features, 0.01, 16, 17)
    assert outliers <= set(keep[:7].tolist())

    def radius(indices: torch.Tensor) -> float:
        return float(torch.cdist(features, features[indices]).amin(dim=1).max())

    random_subset = torch.randperm(len(features), generator=g)[:len(keep)]
    assert radius(keep) < radius(random_subset)
