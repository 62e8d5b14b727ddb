"""What a training cost, read off its loss curve (the rehearsal's cost unit)."""

from __future__ import annotations

import pandas as pd


def step_cost(loss: pd.DataFrame) -> dict[str, float | int]:
    """Optimizer steps of a loss curve and seconds per step: the median interval between
    steps after the first (which pays the lazy initialisations), the rehearsal's cost
    unit; NaN where the model trains no steps (a memory bank)."""
    steps = int(loss["step"].max()) if "seconds" in loss and len(loss) else 0
    seconds = loss["seconds"].diff().iloc[1:] if steps > 1 else pd.Series(dtype=float)
    per_step = float(seconds.median()) if len(seconds) else (
        float(loss["seconds"].iloc[0]) if steps == 1 else float("nan"))
    return {"steps": steps, "s_per_step": per_step}


__all__ = ["step_cost"]
