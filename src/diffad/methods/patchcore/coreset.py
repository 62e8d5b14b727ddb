"""Greedy k-center coreset of PatchCore's memory bank: the textbook selection, fast on a CPU.

PatchCore (Roth et al., CVPR 2022, Sec. 3.2 and Algorithm 1) keeps a coreset of
the train patch features chosen by greedy k-center ("minimax facility location")
selection:

1. Project the n features to ``projection_dim`` dimensions with a Gaussian matrix
   scaled by 1/sqrt(projection_dim) (Johnson-Lindenstrauss: distances are
   approximately kept, and are cheaper). No projection when ``projection_dim`` is
   0 or not below the feature size.
2. Draw a random start row; it is the first coreset row.
3. Keep, for every row, ``min_dist``: its squared distance to the nearest coreset row.
4. Until ``k = ceil(ratio * n)`` rows are chosen: add the row with the largest
   ``min_dist`` (the first one on a tie, as ``argmax``), then lower every row's
   ``min_dist`` to its squared distance to the new row where that is smaller.

Every feature then lies within ``sqrt(max(min_dist))`` of a coreset row, at most
twice the best radius any k rows could reach, so rare (anomaly-like) regions of
the train features stay in the memory bank.

Why the update is written this way
----------------------------------
The textbook step 4 reads the whole n x d projected bank every step: 16,384 steps
over 84 MB (163,840 x 128 float32) for 160 images at 256 px. That is
memory-bound (~18 steps/s, 15 min on 2 cores); a fused
``|a|^2 - 2 a.b + |b|^2`` update (``addmv``) still reads 84 MB a step, and its
rounding differs from ``((a - b) ** 2).sum()``, so near ties can pick another row.

Here the selection is the textbook one, bit for bit, with the bank read once per
*block* of up to ``block`` steps instead of once per step:

a. Active set. Only the largest ``min_dist`` matters. The ``active`` rows with
   the largest ``min_dist`` form A; every other row's value is at most T, the
   largest outside A, and values only decrease. So while A's best current value
   is above T, it is the global argmax, and only A is updated, with the textbook
   expression ``((x_A - x_c) ** 2).sum(1)`` on a gathered (active x d) copy that
   stays in cache (A is kept in index order, so ``argmax`` breaks ties as on the
   whole bank).
b. Block update. When A's best value is no longer above T, or the block is
   full, the block's b new centres are applied to all rows at once. A matrix
   product of the mean-centred rows (compute-bound, not memory-bound) gives
   every row-centre squared distance through the expansion above, and a
   rounding-error bound, ``8 (d + 8) eps (|y_j|^2 + |y_c|^2)``, picks the few
   (row, centre) pairs whose textbook distance *could* be below the row's
   ``min_dist``. Only those are recomputed with the textbook expression and
   min-reduced into ``min_dist``. The ones column appended to the rows folds the
   centre's norm into the same product, and rows are taken in cache-sized chunks.

So ``min_dist`` always holds the textbook values, and each decision compares the
same numbers as the textbook loop. The two ingredients: the textbook expression
gives the same bits on a gathered subset of rows as on the whole bank (the row
sum's order depends on the row only; ``tests/test_coreset.py`` checks it), and
float32 matrix products are float32 (no TF32/bf16 ``matmul`` precision; the
function sets "highest" while it runs). Other devices, dtypes and layouts use the
textbook loop itself.
"""

from __future__ import annotations

import logging
import math
import time

import torch

log = logging.getLogger("diffad.progress")

#: Steps per block (b above): centres applied to the whole bank at once.
BLOCK = 256
LEVEL = 0.9
WIDTH = 256
#: Rows in the active set (m above).
ACTIVE = 512
#: Elements of one (rows x centres) product chunk: 4 MiB of float32.
CHUNK = 2**20
#: Seconds between two progress lines in the log.
LOG_INTERVAL = 30.0


@torch.no_grad()
def greedy_coreset(
    features: torch.Tensor, ratio: float, projection_dim: int, seed: int
) -> torch.Tensor:
    """Indices (CPU, int64) of a greedy k-center coreset of ``ceil(ratio * n)`` rows.

    Same generator use, projection, start row and selected rows as the textbook
    loop (module docstring, steps 1 to 4), for a fixed ``seed``.
    """
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
    if (reduced.device.type != "cpu" or reduced.dtype not in (torch.float32, torch.float64)
            or not reduced.is_contiguous() or not bool(reduced.isfinite().all())):
        return _textbook(reduced, k, start)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        return _Bank(reduced, k).select(start)
    finally:
        torch.set_float32_matmul_precision(precision)


def _textbook(reduced: torch.Tensor, k: int, start: int) -> torch.Tensor:
    """Step 4 as written: one pass over the bank per step (GPU, or unusual inputs)."""
    progress = _Progress(k)
    selected = torch.empty(k, dtype=torch.long)
    min_dist = torch.full((len(reduced),), float("inf"), device=reduced.device)
    index = start
    for i in range(k):
        selected[i] = index
        dist = (reduced - reduced[index]).pow(2).sum(dim=1)
        min_dist = torch.minimum(min_dist, dist)
        index = int(min_dist.argmax())
        progress.update(i + 1)
    progress.done()
    return selected


class _Bank:
    """The projected rows and the selection state of the module docstring's a. to c."""

    def __init__(self, x: torch.Tensor, k: int):
        n, d = x.shape
        self.x, self.k = x, k
        # Mean-centred rows with a ones column, zero-padded to a multiple of 8 columns.
        width = (d + 1 + 7) // 8 * 8
        self.y = torch.zeros(n, width, dtype=x.dtype)
        torch.sub(x, x.mean(dim=0), out=self.y[:, :d])
        margin = 8 * (d + 8) * torch.finfo(x.dtype).eps
        self.sq_low = self.y[:, :d].pow(2).sum(dim=1).mul_(1 - margin)
        self.y[:, d] = 1.0
        # Row i: (2 y_c, -|y_c|^2 (1 - margin)) of centre c = selected[i], filled on use.
        self.centres = torch.zeros(k, width, dtype=x.dtype)
        self.filled = 0
        self.selected = torch.empty(k, dtype=torch.long)
        self.chosen = 0
        #: min_dist[j] is the textbook value over selected[:applied[j]] (an upper bound).
        self.min_dist = torch.full((n,), float("inf"), dtype=x.dtype)
        self.applied = torch.zeros(n, dtype=torch.long)
        self.level = float("inf")
        self.buffer = torch.empty(CHUNK, dtype=x.dtype)

    def select(self, start: int, active: int = ACTIVE, block: int = BLOCK) -> torch.Tensor:
        progress = _Progress(self.k)
        self.selected[0] = start
        self.chosen = 1
        while self.chosen < self.k:
            before = self.chosen
            top = self._top(active)
            if top is not None:
                self._steps(*top, block)
            if self.chosen == before:  # a flood of tied values: one textbook step
                self._catch_up((self.applied < self.chosen).nonzero().squeeze(1), float("-inf"))
                self.selected[self.chosen] = int(self.min_dist.argmax())
                self.chosen += 1
            progress.update(self.chosen)
        progress.done()
        return self.selected

    def _top(self, active: int) -> tuple[torch.Tensor, float] | None:
        """Catch up the rows that may be among the 2 x ``active`` largest; return the
        ``active`` largest (in index order) and the largest value outside them (a.)."""
        n = len(self.min_dist)
        if 2 * active >= n:
            self._catch_up((self.applied < self.chosen).nonzero().squeeze(1), float("-inf"))
            return torch.arange(n), float("-inf")
        while True:
            low = float(self.min_dist.topk(2 * active, sorted=False).values.min())
            if low < self.level:
                self.level = low * LEVEL
            stale = ((self.min_dist >= self.level) & (self.applied < self.chosen)).nonzero().squeeze(1)
            if len(stale) == 0:
                break
            self._catch_up(stale, self.level)
        cut = self.min_dist.topk(active, sorted=False).values.min()
        inside = self.min_dist >= cut
        members = inside.nonzero().squeeze(1)
        if len(members) > 2 * active:
            return None
        return members, float(self.min_dist.masked_fill(inside, float("-inf")).max())

    def _steps(self, members: torch.Tensor, outside: float, block: int) -> None:
        """Choose rows while the active set's best is above every other row (a.)."""
        x, selected = self.x, self.selected
        value = self.min_dist[members]
        rows = x[members]
        diff = torch.empty_like(rows)
        dist = torch.empty_like(value)
        chosen, stop = self.chosen, min(self.k, self.chosen + block)
        while chosen < stop:
            best = int(value.argmax())
            if not float(value[best]) > outside:
                break
            index = int(members[best])
            selected[chosen] = index
            chosen += 1
            torch.sub(rows, x[index], out=diff)
            diff.pow_(2)
            torch.sum(diff, dim=1, out=dist)
            torch.minimum(value, dist, out=value)
        self.chosen = chosen
        self.min_dist[members] = value
        self.applied[members] = chosen

    def _catch_up(self, rows: torch.Tensor, level: float) -> None:
        """Apply the chosen centres to ``rows``, in order, until a row's min_dist is
        below ``level`` or all are applied (b.)."""
        if len(rows) == 0:
            return
        d = self.x.shape[1]
        chosen = self.chosen
        if self.filled < chosen:
            new = self.selected[self.filled:chosen]
            torch.mul(self.y[new, :d], 2.0, out=self.centres[self.filled:chosen, :d])
            self.centres[self.filled:chosen, d] = -self.sq_low[new]
            self.filled = chosen
        # Sorted by centres applied, so a chunk's rows need about the same centres.
        applied = self.applied[rows]
        order = applied.argsort()
        rows, applied = rows[order], applied[order].tolist()
        step = min(len(rows), CHUNK // 64)
        for lo in range(0, len(rows), step):
            part = rows[lo:lo + step]
            y, low = self.y[part], self.sq_low[part]
            min_dist = self.min_dist[part]
            c0 = applied[lo]
            while c0 < chosen:
                c1 = min(chosen, c0 + min(WIDTH, max(64, CHUNK // len(part))))
                h = self.buffer[:len(part) * (c1 - c0)].view(len(part), c1 - c0)
                torch.mm(y, self.centres[c0:c1].T, out=h)
                # d(j, c) may be below min_dist[j] only if
                #   2 y_j.y_c - |y_c|^2 (1 - margin) > |y_j|^2 (1 - margin) - min_dist[j]
                bound = low - min_dist
                hit = (h.amax(dim=1) > bound).nonzero().squeeze(1)
                if len(hit):
                    r, c = (h[hit] > bound[hit, None]).nonzero(as_tuple=True)
                    j = hit[r]
                    dist = (self.x[part[j]] - self.x[self.selected[c0 + c]]).pow(2).sum(dim=1)
                    min_dist.scatter_reduce_(0, j, dist, "amin")
                c0 = c1
                below = min_dist < level
                if c0 < chosen and bool(below.any()):
                    done = below.nonzero().squeeze(1)
                    self.min_dist[part[done]] = min_dist[done]
                    self.applied[part[done]] = c0
                    keep = (~below).nonzero().squeeze(1)
                    part, y, low, min_dist = part[keep], y[keep], low[keep], min_dist[keep]
                    if len(part) == 0:
                        break
            self.min_dist[part] = min_dist
            self.applied[part] = c0


class _Progress:
    """A log line at most every ``LOG_INTERVAL`` seconds and one at the end."""

    def __init__(self, total: int):
        self.total = total
        self.start = self.last = time.perf_counter()
        self.count = 0

    def update(self, count: int) -> None:
        self.count = count
        now = time.perf_counter()
        if now - self.last >= LOG_INTERVAL:
            self.last = now
            self._line(now)

    def done(self) -> None:
        self.count = self.total
        self._line(time.perf_counter())

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else float("inf")
        left = (self.total - self.count) / rate if rate > 0 else float("inf")
        log.info("coreset: %d/%d rows (%.0f %%), %.0f s, %.0f rows/s, ~%.0f s left",
                 self.count, self.total, 100 * self.count / self.total, elapsed, rate, left)


__all__ = ["greedy_coreset"]
