"""Greedy k-center coreset of PatchCore's memory bank: the textbook selection, fast on a CPU.

PatchCore (Roth et al., CVPR 2022, Sec. 3.2 and Algorithm 1) keeps a coreset of
the train patch features chosen by greedy k-center ("minimax facility location")
selection:

1. Project the n features to ``projection_dim`` dimensions with a Gaussian matrix
   scaled by 1/sqrt(projection_dim) (Johnson-Lindenstrauss: distances are
   approximately kept and cheaper to compute). No projection when
   ``projection_dim`` is 0 or not below the feature size.
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
Step 4 as written reads the whole n x d projected bank every step: 16,384 steps
over 84 MB (163,840 x 128 float32, 160 images at 256 px), plus an argmax over
all n rows. That is memory-bound: 10 to 18 steps/s on 2 cores, 15 to 30 min. A
fused ``|a|^2 - 2 a.b + |b|^2`` update (``addmv``) still reads 84 MB a step, and
it rounds differently from ``((a - b) ** 2).sum()``, so a near tie can choose
another row. Here the selection is the textbook one, bit for bit, but a step
touches only a few hundred rows, and the rest of the bank is brought up to date
by matrix products over a block of steps at a time:

a. Active set. Only the largest ``min_dist`` matters. The ``ACTIVE`` rows with
   the largest ``min_dist`` form A; every other row's value is at most T, the
   largest outside A, and values only decrease. So while A's best value is above
   T, it is the global argmax, and only A is updated, with the textbook
   expression ``((x_A - x_c) ** 2).sum(1)`` on a gathered (ACTIVE x d) copy that
   stays in cache (A in index order, so ``argmax`` breaks ties as on the whole
   bank).
b. Block update. The centres chosen since a row was last updated are applied to
   it at once: a matrix product of mean-centred rows (compute-bound, not
   memory-bound) gives each row-centre squared distance through the expansion
   above, with a ones column folding the centre's norm into the product. A
   rounding-error bound, ``8 (d + 8) eps (|y_j|^2 + |y_c|^2)``, keeps only the
   (row, centre) pairs whose textbook distance *could* be below the row's
   ``min_dist``; those few are recomputed with the textbook expression and
   min-reduced into ``min_dist``. So ``min_dist`` holds textbook values only.
c. Lazy rows. A row far below the top cannot be chosen soon: its ``min_dist``
   (over the centres applied to it so far, an upper bound of the current value)
   is left as is until ``level`` comes down to it; the level follows the top
   (``LEVEL`` times the 2 x ACTIVE-th largest value). A row being caught up
   takes the centres in order, a chunk at a time, and stops as soon as it falls
   below the level. Before each block every row at or above the level is caught
   up, so A holds current values and T is an upper bound. On 163,840 random
   rows this skips 2/3 of the row-centre pairs; on clustered features, more.
d. Threads. Only the matrix products use all of torch's threads; every other op
   is small, and a parallel region per small op costs more than it saves, far
   more when other processes hold the cores (2 to 4 times slower overall on a
   busy 2-core machine).

Each decision thus compares the same numbers as the textbook loop. This rests
on two facts: the textbook expression gives the same bits on a gathered subset
of rows as on the whole bank (a row's sum depends on the row only;
``tests/test_coreset.py`` checks the selection against the textbook loop), and
float32 matrix products round as float32 (the function turns off bf16/TF32
``matmul`` precision while it runs). GPU tensors, other dtypes, non-contiguous or
non-finite features use the textbook loop itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator

import torch

log = logging.getLogger("diffad.progress")

#: Rows in the active set (a.).
ACTIVE = 512
#: Most steps between two catch-ups (a.).
BLOCK = 256
#: Rows are kept current down to LEVEL x the 2 x ACTIVE-th largest min_dist (c.).
LEVEL = 0.95
#: Elements of one (rows x centres) product chunk: 4 MiB of float32 (b.).
CHUNK = 2**20
#: Most centres per product chunk, so a catch-up can stop early (c.).
WIDTH = 256
#: Seconds between two progress lines in the log.
LOG_INTERVAL = 30.0


@torch.no_grad()
def greedy_coreset(
    features: torch.Tensor, ratio: float, projection_dim: int, seed: int
) -> torch.Tensor:
    """Indices (CPU, int64) of a greedy k-center coreset of ``ceil(ratio * n)`` rows.

    Same generator use, projection, start row and selected rows as the textbook
    loop (module docstring, steps 1 to 4) for a fixed ``seed``.
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
    threads = torch.get_num_threads()
    with _ieee_matmul(), _num_threads(1):
        return _Bank(reduced, k, threads).select(start)


def _textbook(reduced: torch.Tensor, k: int, start: int) -> torch.Tensor:
    """Step 4 as written: one pass over the bank per step."""
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


@contextlib.contextmanager
def _ieee_matmul() -> Iterator[None]:
    """CPU float32 matrix products in float32 (not bf16/TF32) inside the block."""
    backend = getattr(torch.backends.mkldnn, "matmul", None)
    if backend is not None and hasattr(backend, "fp32_precision"):
        before = backend.fp32_precision
        backend.fp32_precision = "ieee"
        try:
            yield
        finally:
            backend.fp32_precision = before
        return
    before = torch.get_float32_matmul_precision()  # torch < 2.9
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


@contextlib.contextmanager
def _num_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Bank:
    """The projected rows and the selection state (module docstring, a. to c.)."""

    def __init__(self, x: torch.Tensor, k: int, threads: int):
        n, d = x.shape
        self.x, self.k = x, k
        self.threads = threads  # for the matrix products; the rest runs on one
        # Mean-centred rows and a ones column, zero-padded to a multiple of 8 columns.
        width = (d + 1 + 7) // 8 * 8
        self.y = torch.zeros(n, width, dtype=x.dtype)
        torch.sub(x, x.mean(dim=0), out=self.y[:, :d])
        margin = 8 * (d + 8) * torch.finfo(x.dtype).eps
        self.sq_low = self.y[:, :d].pow(2).sum(dim=1).mul_(1 - margin)
        self.y[:, d] = 1.0
        # Row i: (2 y_c, -|y_c|^2 (1 - margin)) for the centre c = selected[i].
        self.centres = torch.zeros(k, width, dtype=x.dtype)
        self.filled = 0
        self.selected = torch.empty(k, dtype=torch.long)
        self.chosen = 0
        # min_dist[j]: the textbook value over at least selected[:applied[j]] and
        # at most selected[:chosen], so an upper bound of the current value.
        self.min_dist = torch.full((n,), float("inf"), dtype=x.dtype)
        self.applied = torch.zeros(n, dtype=torch.long)
        self.level = float("inf")
        self.buffer = torch.empty(CHUNK, dtype=x.dtype)

    def select(self, start: int) -> torch.Tensor:
        progress = _Progress(self.k)
        self.selected[0] = start
        self.chosen = 1
        while self.chosen < self.k:
            before = self.chosen
            top = self._top()
            if top is not None:
                self._steps(*top)
            if self.chosen == before:  # a flood of tied values: one textbook step
                self._catch_up(self._stale(float("-inf")), float("-inf"))
                self.selected[self.chosen] = int(self.min_dist.argmax())
                self.chosen += 1
            progress.update(self.chosen)
        progress.done()
        return self.selected

    def _stale(self, level: float) -> torch.Tensor:
        """Rows at or above ``level`` that miss some chosen centre."""
        return ((self.min_dist >= level) & (self.applied < self.chosen)).nonzero().squeeze(1)

    def _top(self) -> tuple[torch.Tensor, float] | None:
        """Catch up the rows at or above the level (c.); return A, in index order,
        and T, the largest value outside it (a.); None if ties make A too large."""
        n = len(self.min_dist)
        if 2 * ACTIVE >= n:
            self._catch_up(self._stale(float("-inf")), float("-inf"))
            return torch.arange(n), float("-inf")
        while True:
            low = float(self.min_dist.topk(2 * ACTIVE, sorted=False).values.min())
            if low < self.level:
                self.level = low * LEVEL
            stale = self._stale(self.level)
            if len(stale) == 0:
                break
            self._catch_up(stale, self.level)
        # Now every row at or above ``low`` (>= level) is current.
        cut = self.min_dist.topk(ACTIVE, sorted=False).values.min()
        inside = self.min_dist >= cut
        members = inside.nonzero().squeeze(1)
        if len(members) > 2 * ACTIVE:
            return None
        return members, float(self.min_dist.masked_fill(inside, float("-inf")).max())

    def _steps(self, members: torch.Tensor, outside: float) -> None:
        """Choose rows while A's best value is above ``outside`` (a.)."""
        x, selected = self.x, self.selected
        value = self.min_dist.index_select(0, members)
        rows = x.index_select(0, members)
        diff = torch.empty_like(rows)
        dist = torch.empty_like(value)
        chosen, stop = self.chosen, min(self.k, self.chosen + BLOCK)
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
        self.min_dist.index_copy_(0, members, value)
        self.applied.index_fill_(0, members, chosen)

    def _catch_up(self, rows: torch.Tensor, level: float) -> None:
        """Apply the chosen centres to ``rows`` in order, until all are applied or
        the row's min_dist is below ``level`` (b., c.)."""
        if len(rows) == 0:
            return
        d, chosen = self.x.shape[1], self.chosen
        if self.filled < chosen:
            new = self.selected[self.filled:chosen]
            torch.mul(self.y[new, :d], 2.0, out=self.centres[self.filled:chosen, :d])
            self.centres[self.filled:chosen, d] = -self.sq_low[new]
            self.filled = chosen
        # Sorted by centres applied, so a chunk's rows need about the same centres.
        applied, order = self.applied.index_select(0, rows).sort()
        rows, applied = rows.index_select(0, order), applied.tolist()
        step = min(len(rows), CHUNK // 64)
        for lo in range(0, len(rows), step):
            part = rows[lo:lo + step]
            y, low = self.y.index_select(0, part), self.sq_low.index_select(0, part)
            min_dist = self.min_dist.index_select(0, part)
            c0 = applied[lo]
            while c0 < chosen:
                c1 = min(chosen, c0 + min(WIDTH, max(64, CHUNK // len(part))))
                h = self.buffer[:len(part) * (c1 - c0)].view(len(part), c1 - c0)
                big = h.numel() * y.shape[1] >= 2**22  # else threads cost more than they save
                with _num_threads(self.threads if big else 1):
                    torch.mm(y, self.centres[c0:c1].T, out=h)
                # The textbook d(j, c) may be below min_dist[j] only if
                #   2 y_j.y_c - |y_c|^2 (1 - margin) > |y_j|^2 (1 - margin) - min_dist[j].
                bound = low - min_dist
                hit = (h.amax(dim=1) > bound).nonzero().squeeze(1)
                if len(hit):
                    r, c = (h.index_select(0, hit) > bound.index_select(0, hit)[:, None]
                            ).nonzero(as_tuple=True)
                    j = hit.index_select(0, r)
                    a = self.x.index_select(0, part.index_select(0, j))
                    b = self.x.index_select(0, self.selected[c0:c1].index_select(0, c))
                    min_dist.scatter_reduce_(0, j, (a - b).pow(2).sum(dim=1), "amin")
                c0 = c1
                if c0 == chosen:
                    break
                # Rows now below ``level`` stop here, once they are a quarter of the chunk.
                below = min_dist < level
                if 4 * int(below.sum()) >= len(part):
                    done = below.nonzero().squeeze(1)
                    self.min_dist.index_copy_(0, part.index_select(0, done),
                                              min_dist.index_select(0, done))
                    self.applied.index_fill_(0, part.index_select(0, done), c0)
                    keep = (~below).nonzero().squeeze(1)
                    part, y = part.index_select(0, keep), y.index_select(0, keep)
                    low, min_dist = low.index_select(0, keep), min_dist.index_select(0, keep)
                    if len(part) == 0:
                        break
            self.min_dist.index_copy_(0, part, min_dist)
            self.applied.index_fill_(0, part, c0)


class _Progress:
    """A log line at most every ``LOG_INTERVAL`` seconds, and one at the end."""

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
