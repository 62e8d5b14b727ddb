"""A rehearsal's measured cost, and the estimate of the full reproduction it rehearses.

Every rehearsed job recorded, on the device it ran on, what one unit of its
work cost: a train job its seconds per optimizer step (``s_per_step``, at the
rehearsal's batch) or, without a trainer, its seconds per train image; an
infer job its milliseconds per test image (``latency_ms``, the network only,
model loading excluded) at its NFE; an autoencoder its seconds per step; a
captioner its seconds per image; and each its peak host memory (and CUDA
memory on a GPU) and parameters.

The estimate multiplies, job by job of the *full* plan
(:meth:`~diffad.plan.Plan.jobs` of the real config), the unit cost of the
rehearsed variant of the same code path
(:func:`~diffad.plan.rehearsal.representatives`) by the job's own size:

- training: seconds per sample (a step's seconds over the samples it saw) x
  the samples of the full training (``max_steps`` x batch x accumulation, or
  ``epochs`` x the train images of the unit);
- inference: ms per image x (the variant's NFE / the rehearsed one's, for a
  diffusion method) x the test images (and the train images where the score
  tier standardises by them);
- captions: seconds per image x images; the autoencoder as training.

Image counts are each benchmark's published sizes
(:data:`~diffad.data.layouts.PUBLISHED`). Model loading, process start and
scheduler waits are not in it. The device is the rehearsal's: a CPU
measurement estimates a CPU run; how it relates to a GPU is the reader's
assumption, and the README says so, never a made-up factor.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from diffad.data import ALL_CATEGORIES
from diffad.data.layouts import published_size
from diffad.methods import for_category, params_of
from diffad.plan.rehearsal import representatives
from diffad.training import TrainerParams
from diffad.weights import weight_source

if TYPE_CHECKING:
    from diffad.plan.plan import Plan

#: The columns of cost.csv, one row per (stage, variant, dataset) of the full run.
COLUMNS = ["stage", "variant", "rehearsed_as", "dataset", "jobs", "device", "params_m",
           "unit", "unit_cost", "peak_rss_mb", "cuda_peak_mb", "work", "hours", "mem_mb",
           "runtime_min", "gpu", "note"]


def _read_json(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def _images(plan: Plan, dataset: str, unit: str, split: str) -> int:
    """Published images of a unit (``all``: every category of the dataset) and split."""
    kind = plan.datasets[dataset]["kind"]
    categories = plan.training_categories(dataset, unit)
    total = 0
    for category in categories:
        size = published_size(kind, category)
        if size is None:  # no published size (folder, synthetic): the plan cannot say
            return 0
        total += size.n_train if split == "train" else size.n_test
    return total


def _samples(params: Any, n_train: int) -> int:
    """Samples a full training sees (steps x batch x accumulation)."""
    if not isinstance(params, TrainerParams):
        return n_train
    per_step = params.batch_size * params.grad_accum
    if params.max_steps is not None:
        return params.max_steps * per_step
    steps_per_epoch = math.ceil(math.ceil(n_train / params.batch_size) / params.grad_accum)
    return params.epochs * steps_per_epoch * per_step


def _seen_per_step(params: Any, n_train: int) -> int:
    """Samples a rehearsal step saw: a micro-batch is at most the images there are."""
    if not isinstance(params, TrainerParams):
        return max(1, n_train)
    return max(1, min(params.batch_size, n_train)) * params.grad_accum


def _rehearsal_category(rehearsal: Plan, dataset: str, category: str) -> str:
    if category == ALL_CATEGORIES:
        return category
    kept = rehearsal.categories(dataset)
    return category if category in kept else kept[0]


def _measured_on(rehearsal: Plan, datasets: list[str], dataset: str) -> str | None:
    """Of the ``datasets`` a rehearsal ran something on, the one whose measurement stands
    for the full run's ``dataset``: itself, else one at the same image size (the same code
    at the same resolution: :func:`~diffad.plan.rehearsal.rehearsal_datasets`)."""
    if dataset in datasets:
        return dataset
    size = rehearsal.image_size(dataset)
    return next((d for d in datasets if rehearsal.image_size(d) == size), None)


def _stand_in(note: list[str], measured: str, dataset: str) -> None:
    if measured != dataset:
        note.append(f"measured on {measured}")


def cost_table(rehearsal: Plan) -> pd.DataFrame:
    """Measured unit costs of the rehearsal and the estimate of its full run, one row per
    (stage, variant, dataset) of the full plan."""
    full = rehearsal.full
    if full is None:
        raise ValueError("cost_table needs the plan of a rehearsal (config `rehearsal:`)")
    reps = representatives(full.variants)
    device = "?"
    rows = []
    metrics = {}
    for m, d, c in rehearsal.grid:
        path = rehearsal.paths.format(rehearsal.paths.metrics, method=m, dataset=d, category=c)
        if Path(path).is_file():
            metrics[(m, d, c)] = pd.read_parquet(path).iloc[0]
    jobs = full.jobs()
    for stage in ("train", "infer"):
        groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        names = jobs[stage] + (jobs.get("infer_with_strengths", []) if stage == "infer" else [])
        for m, d, c in names:
            groups.setdefault((m, d), []).append((m, d, c))
        for (m, d), group in groups.items():
            rep = reps[m]
            params = params_of(full.methods[m])
            rep_params = params_of(rehearsal.methods[rep])
            note: list[str] = []
            on = _measured_on(rehearsal, rehearsal.methods[rep].get("datasets") or [], d)
            if on is None:
                continue
            _stand_in(note, on, d)
            if stage == "train":
                owner = rehearsal.variants.trained_by[rep]
                unit = _rehearsal_category(rehearsal, on, group[0][2])
                meta = _read_json(rehearsal.model(owner, on, unit)) if owner else {}
                if not meta:
                    continue
                device = meta.get("device", device)
                per_step = meta.get("s_per_step", float("nan"))
                seen = _seen_per_step(rep_params, int(meta.get("n_train", 0)))
                if isinstance(rep_params, TrainerParams) and meta.get("steps", 0):
                    unit_cost = per_step / seen
                    note.append(f"{meta['steps']} steps of {seen} samples measured")
                    batch = max(1, min(rep_params.batch_size, int(meta.get("n_train", 0))))
                    if isinstance(params, TrainerParams) and batch < params.batch_size:
                        # Fewer train images (or max_batch) than the configured batch: the
                        # memory a job of the full batch needs was not measured.
                        note.append(f"batch {batch} of the configured {params.batch_size}: "
                                    f"peak memory at batch {batch}")
                else:
                    unit_cost = float(meta.get("train_s", 0.0)) / max(1, int(meta.get("n_train",
                                                                                       1)))
                work = sum(_samples(params, _images(full, d, c, "train")) for _, _, c in group)
                row = {"unit": "s / train sample", "unit_cost": unit_cost, "work": work,
                       "hours": unit_cost * work / 3600,
                       "peak_rss_mb": meta.get("peak_rss_mb"),
                       "cuda_peak_mb": meta.get("cuda_peak_mb"),
                       "params_m": meta.get("params", 0) / 1e6,
                       **_resource(full, "train", d)}
            else:
                measured = [metrics[key] for key in metrics if key[0] == rep and key[1] == on]
                if not measured:
                    continue
                ms = float(pd.Series([r["latency_ms"] for r in measured]).mean())
                # Scaled by each category's own NFE (per_category settings, e.g. ESM's T_d
                # per class) over the rehearsed one.
                rep_nfe = rehearsal.kind(rep).nfe(rep_params)
                splits = ("test", "train") if full.train_scores(m) else ("test",)
                work, total_ms, nfes = 0, 0.0, set()
                for _, _, c in group:
                    nfe = full.kind(m).nfe(params_of(for_category(full.methods[m], c)))
                    nfes.add(nfe)
                    images = sum(_images(full, d, c, s) for s in splits)
                    work += images
                    total_ms += ms * (nfe / rep_nfe if rep_nfe else 1.0) * images
                if nfes != {rep_nfe} and rep_nfe:
                    span = (f"{min(nfes)}" if len(nfes) == 1
                            else f"{min(nfes)}-{max(nfes)} by category")
                    note.append(f"NFE {span} vs {rep_nfe} rehearsed")
                row = {"unit": "ms / image", "unit_cost": total_ms / work if work else ms,
                       "work": work, "hours": total_ms / 3.6e6,
                       "peak_rss_mb": float(measured[0].get("infer_peak_rss_mb", float("nan"))),
                       "cuda_peak_mb": float(measured[0].get("infer_cuda_peak_mb",
                                                             float("nan"))),
                       "params_m": float(measured[0]["params"]) / 1e6,
                       **_resource(full, "infer", d)}
            rows.append({"stage": stage, "variant": m, "rehearsed_as": rep, "dataset": d,
                         "jobs": len(group), "device": device, **row,
                         "note": "; ".join(note)})
    rows += _upstream_rows(rehearsal, full, jobs, device)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table


def _resource(plan: Plan, rule: str, dataset: str) -> dict[str, int]:
    """What the full run asks the scheduler for, per job of ``rule`` on ``dataset``."""
    request = {**plan.config["resources"][rule],
               **plan.datasets[dataset].get("resources", {}).get(rule, {})}
    return {"mem_mb": int(request["mem_mb"]), "runtime_min": int(request["runtime"]),
            "gpu": int(request.get("gpu", 0))}


def _upstream_rows(rehearsal: Plan, full: Plan, jobs: dict, device: str) -> list[dict]:
    """The autoencoder and caption stages: their own unit costs, same estimate. A dataset
    or captioner the rehearsal did not run is measured on one that runs the same code
    (same image size; same model and family, another prompt), said in the note."""
    rows = []
    rehearsed = rehearsal.jobs()
    for name, d, unit in jobs["autoencoder"]:
        ran = {r_d: r_unit for r_n, r_d, r_unit in rehearsed["autoencoder"] if r_n == name}
        on = _measured_on(rehearsal, list(ran), d)
        if on is None:
            continue
        # The rehearsed unit of that dataset (a COCO-AD fold stands for all of COCO-AD).
        meta = _read_json(rehearsal.autoencoder_model(name, on, ran[on]))
        if not meta:
            continue
        params = full.autoencoders[name]
        seen = _seen_per_step(params, int(meta.get("n_train", 0)))
        per_sample = (meta.get("s_per_step", float("nan")) / seen if meta.get("steps")
                      else 0.0)
        work = _samples(params, _images(full, d, unit, "train")) if params.finetune else 0
        note: list[str] = []
        _stand_in(note, on, d)
        rows.append({"stage": "autoencoder", "variant": name, "rehearsed_as": name,
                     "dataset": d, "jobs": 1, "device": meta.get("device", device),
                     "params_m": meta.get("params", 0) / 1e6, "unit": "s / train sample",
                     "unit_cost": per_sample, "work": work, "hours": per_sample * work / 3600,
                     "peak_rss_mb": meta.get("peak_rss_mb"),
                     "cuda_peak_mb": meta.get("cuda_peak_mb"),
                     **_resource(full, "autoencoder", d), "note": "; ".join(note)})

    def model(captioner: str) -> tuple[str, str]:
        params = full.captioners[captioner]
        return params.family, params.weights

    for stage, split in (("captions", "train"), ("test_captions", "test")):
        groups: dict[tuple[str, str], list[str]] = {}
        for captioner, d, c in jobs[stage]:
            groups.setdefault((captioner, d), []).append(c)
        ran_on: dict[str, list[str]] = {}  # rehearsed captioner -> its datasets
        for captioner, d, _ in rehearsed[stage]:
            ran_on.setdefault(captioner, []).append(d)
        for (captioner, d), categories in groups.items():
            # Itself where rehearsed, else a rehearsed captioner of the same model.
            same = [captioner] if captioner in ran_on else [
                r for r in ran_on if model(r) == model(captioner)]
            measured = [(r, on) for r in same
                        if (on := _measured_on(rehearsal, ran_on[r], d)) is not None]
            if not measured:
                continue
            as_, on = measured[0]
            c_r = _rehearsal_category(rehearsal, on, categories[0])
            template = getattr(rehearsal.paths, stage)
            path = rehearsal.paths.format(template, captioner=as_, dataset=on, category=c_r)
            if not Path(path).is_file():
                continue
            per_image = float(pd.read_parquet(path)["seconds"].mean())
            work = sum(_images(full, d, c, split) for c in categories)
            # The model it ran: a substitute that fits is named (the weights' source).
            note = [weight_source(rehearsal.captioners[as_].weights).description]
            _stand_in(note, on, d)
            rows.append({"stage": stage, "variant": captioner, "rehearsed_as": as_,
                         "dataset": d, "jobs": len(categories), "device": device,
                         "params_m": float("nan"), "unit": "s / image", "unit_cost": per_image,
                         "work": work, "hours": per_image * work / 3600,
                         "peak_rss_mb": float("nan"), "cuda_peak_mb": float("nan"),
                         **_resource(full, "captions", d), "note": "; ".join(note)})
    return rows


def cost_report(table: pd.DataFrame, rehearsal: Plan) -> str:
    """cost.md: the measured table, hours per stage and in total, and the resource requests
    the measurements say are too small."""
    device = ", ".join(sorted(set(table["device"].astype(str)))) or "?"
    shown = table.copy()
    for column in ("unit_cost", "params_m", "hours"):
        shown[column] = shown[column].map(lambda v: f"{v:.4g}" if pd.notna(v) else "–")
    for column in ("peak_rss_mb", "cuda_peak_mb"):
        shown[column] = shown[column].map(lambda v: f"{v:.0f}" if pd.notna(v) else "–")
    by_stage = table.groupby("stage", sort=False)["hours"].sum()
    small = table[table["peak_rss_mb"].astype(float) > table["mem_mb"].astype(float)]
    lines = [
        f"# Rehearsal of {rehearsal.full.experiment}: measured cost and the full run's "
        "estimate",
        "",
        f"Measured on {device} ({platform.node()}), {rehearsal.rehearsal.steps} optimizer "
        f"steps per training and {rehearsal.rehearsal.test_images} test images per category "
        "at the reproduction's real sizes; the estimate multiplies each unit cost by the "
        "full run's work (published image counts, the config's epochs, NFE and variants). "
        "Not counted: model loading, process start, queue waits. A CPU measurement "
        "estimates a CPU run.",
        "",
        shown.to_markdown(index=False),
        "",
        "## Estimate of the full run (hours on the rehearsal's device)",
        "",
        *(f"- {stage}: {hours:.1f}" for stage, hours in by_stage.items()),
        f"- **total: {by_stage.sum():.1f}**",
        "",
        "## Resource requests the measurements say are too small",
        "",
    ]
    for row in small.itertuples():
        lines.append(f"- {row.stage} of {row.variant} on {row.dataset}: peak "
                     f"{row.peak_rss_mb:.0f} MB > mem_mb {row.mem_mb} (raise "
                     f"`resources: {{{row.stage}: {{mem_mb: ...}}}}`)")
    # A job's hours compare with its walltime only where they were measured on the kind of
    # device the rule asks for: CPU hours say nothing about a GPU job's walltime.
    on_cuda = table["device"].astype(str).str.startswith("cuda")
    per_job_min = table["hours"] * 60 / table["jobs"].clip(lower=1)
    slow = table[on_cuda & (table["gpu"] > 0) & (per_job_min > table["runtime_min"])]
    for row, minutes in zip(slow.itertuples(), per_job_min[slow.index], strict=True):
        lines.append(f"- {row.stage} of {row.variant} on {row.dataset}: about {minutes:.0f} "
                     f"min per job > runtime {row.runtime_min} (raise `resources: "
                     f"{{{row.stage}: {{runtime: ...}}}}`)")
    cpu_only = table[~on_cuda & (table["gpu"] > 0)]
    if not cpu_only.empty:
        lines.append(f"- runtime: not checked for the {len(cpu_only)} rows measured on the "
                     "CPU whose rules ask for a GPU (the walltime of a GPU job cannot be read "
                     "from a CPU measurement); rehearse on a GPU node to check it")
    if small.empty and slow.empty and cpu_only.empty:
        lines.append("None: every measured peak host memory is within its rule's `mem_mb` "
                     "and every job's estimate within its `runtime`.")
    return "\n".join(lines) + "\n"


__all__ = ["COLUMNS", "cost_report", "cost_table"]
