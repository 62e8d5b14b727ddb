"""Deterministic DDIM steps in both directions (paper 001, Eqs. 12 and 15 with sigma = 0).

With ``a_t`` the cumulative product of alphas of a diffusers scheduler and
``eps = eps_theta(x_t, t)``, one step from timestep ``t`` to ``s`` is

    f(x_t) = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)        (Eq. 11: predicted x_0)
    x_s    = sqrt(a_s) * f(x_t) + sqrt(1 - a_s) * eps        (Eq. 12 if s < t, Eq. 15 if s > t)

so sampling (``s < t``) and inversion (``s > t``, the Euler step of the
PF-ODE, Eq. 13) are the same update. Timesteps are 0-based as in diffusers;
the data ``x_0`` has ``a = 1`` and the network sees it at timestep 0, so an
S-step inversion or sampling costs exactly S network evaluations.

Example (S = 3 of T = 1000)::

    >>> step_grid(3, 1000)
    [333, 666, 999]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

EpsModel = Callable[[torch.Tensor, int], torch.Tensor]


def step_grid(steps: int, train_timesteps: int) -> list[int]:
    """The S timesteps tau_1..tau_S, evenly spaced up to T - 1 ([333, 666, 999] for S = 3)."""
    if not 1 <= steps <= train_timesteps:
        raise ValueError(f"steps must be in [1, {train_timesteps}], got {steps}")
    if steps == train_timesteps:
        return list(range(train_timesteps))
    return [int(round(i * (train_timesteps - 1) / steps)) for i in range(1, steps + 1)]


def inversion_path(steps: int, alphas_cumprod: torch.Tensor,
                   spacing: str = "paper") -> list[tuple[int, float]]:
    """(timestep, a_t) pairs of an S-step inversion; the network is evaluated at each
    pair's timestep but the last's, so S times.

    ``paper``: from the data (a = 1, evaluated at t = 0) up to tau_S (Eq. 15).
    ``official`` (paper 001's code): evaluated at round(linspace(0, T - 1, S)), the data
    taken at t = 0 with a_0 (diffusers' ``set_alpha_to_one=False``), and a last step
    from T - 1 to a = 0, so x_T is the network's epsilon at T - 1.
    """
    total = len(alphas_cumprod)
    if spacing == "official":
        if not 1 <= steps <= total:
            raise ValueError(f"steps must be in [1, {total}], got {steps}")
        grid = sorted({int(round(i * (total - 1) / max(steps - 1, 1))) for i in range(steps)})
        return [(t, float(alphas_cumprod[t])) for t in grid] + [(total, 0.0)]
    if spacing != "paper":
        raise ValueError(f"spacing must be 'paper' or 'official', got {spacing!r}")
    grid = step_grid(steps, total)
    return [(0, 1.0)] + [(t, float(alphas_cumprod[t])) for t in grid]


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_t: float, alpha_s: float) -> torch.Tensor:
    """One deterministic DDIM update from timestep t to s (either direction)."""
    x0 = (x - (1 - alpha_t) ** 0.5 * eps) / alpha_t**0.5
    return alpha_s**0.5 * x0 + (1 - alpha_s) ** 0.5 * eps


def run_ddim(model: EpsModel, x: torch.Tensor, path: Sequence[tuple[int, float]]) -> torch.Tensor:
    """Walk ``x`` along ``path`` of (timestep, a_t): increasing inverts, decreasing samples.

    Evaluates ``model`` exactly ``len(path) - 1`` times, at each step's source timestep.
    """
    for (t, alpha_t), (_, alpha_s) in zip(path[:-1], path[1:], strict=True):
        eps = model(x, t).float()
        x = ddim_step(x, eps, alpha_t, alpha_s)
    return x
