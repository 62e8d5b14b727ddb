"""The caption table of a set of images, written resumably: a killed job loses one batch.

A table has one row per image, in the order of the manifest rows it was asked
for, with the columns of :data:`CAPTION_COLUMNS`. While captioning, every
finished batch is added to a partial file beside the output
(``<dir>/.<stem>.partial.parquet``, rewritten atomically); a rerun keeps the
rows of a partial file made by the same captioner with the same prompt and
settings, and captions only the rest. Greedy decoding makes the captions of
the same images the same on every run (on the same device and dtype).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from diffad.captions.families import generate_captions, load_captioner, resolve_dtype
from diffad.captions.params import CaptionerParams
from diffad.data.images import load_image
from diffad.device import synchronize
from diffad.errors import ConfigError, DatasetError
from diffad.io import write_parquet
from diffad.logs import progress
from diffad.runtime import Runtime

log = logging.getLogger(__name__)

#: Columns of a caption table, in order; ``prompt`` holds the prompt's text and
#: ``seconds`` the generation time per image (its batch's time over the batch size).
CAPTION_COLUMNS: tuple[str, ...] = ("image_path", "split", "category", "caption", "captioner",
                                    "prompt", "seconds")
_ROW_COLUMNS = ("image_path", "split", "category")
# Table metadata (DataFrame.attrs, kept in the Parquet file): the settings that made it.
_SETTINGS_KEY = "captioner_settings"
# Settings that cannot change a caption, so a partial file made with others is still good.
_IRRELEVANT = ("batch_size",)


def partial_path(output: str | os.PathLike) -> Path:
    """Where :func:`caption_images` keeps its progress for ``output``."""
    output = Path(output)
    return output.parent / f".{output.stem}.partial.parquet"


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """An image at its own resolution as an 8-bit RGB PIL image, read through
    :func:`~diffad.data.images.load_image` (every mode converted the same way as for the
    detectors; a broken file raises DatasetError naming it)."""
    pixels = load_image(path)
    return Image.fromarray(np.round(pixels * np.float32(255.0)).astype(np.uint8), mode="RGB")


def _settings(name: str, params: CaptionerParams) -> str:
    values = params.model_dump(mode="json", exclude=set(_IRRELEVANT))
    return json.dumps({"captioner": name, **values, "prompt": params.prompt_text},
                      sort_keys=True)


def _frame(records: list[dict[str, Any]] | pd.DataFrame, settings: str) -> pd.DataFrame:
    table = pd.DataFrame(records, columns=list(CAPTION_COLUMNS))
    table = table.astype({**{c: "str" for c in CAPTION_COLUMNS if c != "seconds"},
                          "seconds": "float64"})
    table.attrs[_SETTINGS_KEY] = settings
    return table.reset_index(drop=True)


def _resumable(partial: Path, name: str, params: CaptionerParams,
               wanted: set[str]) -> pd.DataFrame | None:
    """The rows of ``partial`` this run can keep, or None when there are none to keep."""
    if not partial.exists():
        return None
    try:
        table = pd.read_parquet(partial)
    except Exception as exc:  # noqa: BLE001 (any unreadable partial file is only ignored)
        log.warning("ignoring unreadable partial caption file %s: %s", partial, exc)
        return None
    missing = [c for c in CAPTION_COLUMNS if c not in table.columns]
    if missing:
        log.warning("ignoring partial caption file %s: it lacks columns %s", partial, missing)
        return None
    if len(table) and (set(table["captioner"]) != {name}
                       or set(table["prompt"]) != {params.prompt_text}):
        log.warning("ignoring partial caption file %s: made by captioner(s) %s with prompt(s) "
                    "%s, not %s with %r", partial, sorted(set(table["captioner"])),
                    sorted(set(table["prompt"])), name, params.prompt_text)
        return None
    settings = table.attrs.get(_SETTINGS_KEY)
    if settings is not None and settings != _settings(name, params):
        log.warning("ignoring partial caption file %s: made with other settings of "
                    "captioner %s (%s)", partial, name, settings)
        return None
    table = table[table["image_path"].isin(wanted)].drop_duplicates("image_path")
    return table if len(table) else None


def caption_images(name: str, params: CaptionerParams, rows: pd.DataFrame, runtime: Runtime,
                   output: str | os.PathLike) -> pd.DataFrame:
    """Caption the images of ``rows`` (manifest rows: ``image_path``, ``split``,
    ``category``...) with captioner ``name`` and write the table to ``output``.

    Images go to the model at their own resolution (the model's processor
    resizes them), ``params.batch_size`` at a time. Progress is kept in
    :func:`partial_path`, so a rerun after a killed job captions only what is
    missing; the partial file is removed once ``output`` is written.

    Returns:
        The table (:data:`CAPTION_COLUMNS`), one row per image in the order of ``rows``.

    Raises:
        DatasetError: ``rows`` is empty, or an image cannot be read.
        ValueError: ``rows`` lacks a column or lists an image twice.
    """
    output = Path(output)
    missing = [c for c in _ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"rows for {output} lack columns {missing}")
    if rows.empty:
        raise DatasetError(f"no images to caption for {output}: the manifest rows are empty")
    twice = rows["image_path"][rows["image_path"].duplicated()].unique()
    if len(twice):
        raise ValueError(f"rows for {output} list images more than once: {list(twice[:3])}")

    prompt = params.prompt_text
    settings = _settings(name, params)
    partial = partial_path(output)
    done = _resumable(partial, name, params, set(rows["image_path"]))
    table = _frame([], settings) if done is None else _frame(done, settings)
    if len(table):
        log.info("resuming: %d of %d images already captioned (%s)", len(table), len(rows),
                 partial)
    todo = rows[~rows["image_path"].isin(set(table["image_path"]))]
    if len(todo):
        model, processor = load_captioner(params, runtime)
        log.info("captioner %s: %s (%s) on %s in %s, prompt %r, %d images", name,
                 params.weights, params.family, runtime.device,
                 resolve_dtype(params.dtype, runtime.device), prompt, len(todo))
        starts = range(0, len(todo), params.batch_size)
        for start in progress(starts, desc=f"captions {name}", unit="batch"):
            batch = todo.iloc[start:start + params.batch_size]
            images = [open_rgb(path) for path in batch["image_path"]]
            # Seeded per batch, so a resumed run is in the same state as a fresh one (greedy
            # decoding draws nothing; a model that does would still repeat itself).
            torch.manual_seed(runtime.seed)
            synchronize(runtime.device)
            began = time.perf_counter()
            try:
                captions = generate_captions(params.family, model, processor, images, prompt,
                                             params, runtime.device)
            except ConfigError as err:  # a setting the model cannot honour: name its key
                raise ConfigError(f"captioners.{name}.{err}") from None
            synchronize(runtime.device)
            seconds = (time.perf_counter() - began) / len(images)
            new = [{"image_path": row.image_path, "split": row.split, "category": row.category,
                    "caption": caption, "captioner": name, "prompt": prompt,
                    "seconds": seconds}
                   for row, caption in zip(batch.itertuples(index=False), captions, strict=True)]
            table = _frame(pd.concat([table, _frame(new, settings)], ignore_index=True),
                           settings)
            write_parquet(table, partial)

    order = pd.Index(table["image_path"]).get_indexer(rows["image_path"])
    table = _frame(table.iloc[order], settings)
    write_parquet(table, output)
    partial.unlink(missing_ok=True)
    _summary(name, table, output)
    return table


def _summary(name: str, table: pd.DataFrame, output: Path) -> None:
    empty = int((table["caption"].str.len() == 0).sum())
    if empty:
        log.warning("captioner %s: %d of %d captions are empty", name, empty, len(table))
    examples = "; ".join(repr(c) for c in table["caption"].head(2))
    log.info("captioner %s: %d images, %.3f s per image, wrote %s; e.g. %s", name, len(table),
             float(table["seconds"].mean()), output, examples)


def read_captions(paths: list[str] | list[os.PathLike]) -> dict[str, str]:
    """image_path -> caption from one or more caption tables.

    Raises:
        ValueError: a table lacks ``image_path`` or ``caption`` (naming the
            file), or two tables give one image different captions.
    """
    captions: dict[str, str] = {}
    for path in paths:
        table = pd.read_parquet(path)
        missing = [c for c in ("image_path", "caption") if c not in table.columns]
        if missing:
            raise ValueError(f"{os.fspath(path)} is no caption table: it lacks columns {missing}")
        for image, caption in zip(table["image_path"], table["caption"], strict=True):
            if captions.setdefault(image, caption) != caption:
                raise ValueError(f"{image} has two different captions; {os.fspath(path)} "
                                 f"disagrees with an earlier table")
    return captions


__all__ = ["CAPTION_COLUMNS", "caption_images", "open_rgb", "partial_path", "read_captions"]
