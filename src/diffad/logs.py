"""Job logs a reader can use on a cluster: a header, progress lines, the traceback.

Every rule's script runs inside :func:`log_to`, which sends logging, stdout
and stderr to the rule's ``log:`` file. Progress is reported by
:func:`progress`: a tqdm bar on a terminal, and in a file one line every
``interval`` seconds instead of a carriage-return flood.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import NoReturn, TypeVar

T = TypeVar("T")

log = logging.getLogger("diffad.progress")


def job_context() -> str:
    """Host, and the scheduler's job id and GPU allocation when there is one."""
    keys = ("SLURM_JOB_ID", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "SLURM_CPUS_PER_TASK")
    found = [f"{key}={os.environ[key]}" for key in keys if key in os.environ]
    return " ".join([f"host={socket.gethostname()}", *found])


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None, header: str = "") -> Iterator[logging.Logger]:
    """Route logging, stdout and stderr (progress included) into ``path``.

    ``header`` (the rule and its wildcards) opens the log, with the host and
    the scheduler's job. An exception is written to the log with its
    traceback and re-raised, so Snakemake still marks the job as failed.
    ``None`` leaves the streams alone.
    """
    logger = logging.getLogger("diffad")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield logger
        return
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    _quiet_library_progress_bars()
    with open(path, "a", buffering=1) as stream, \
            contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logger.info("%s%s", f"{header} | " if header else "", job_context())
        try:
            yield logger
        except BaseException:
            traceback.print_exc(file=stream)
            raise
        finally:
            root.removeHandler(handler)


def exit_job() -> NoReturn:
    """End a job's process once its outputs are written and its log closed, skipping the
    interpreter's teardown: with diffusers, transformers or open_clip imported it takes
    1.1-1.6 s (measured), paid once by every torch job of a run. The streams are
    flushed first; the exit status is 0, as a normal end of the script."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _quiet_library_progress_bars() -> None:
    """No tqdm bars from the Hugging Face libraries in a log file (a carriage-return flood
    per model load): the hub's switch, which transformers reads when it is imported, and
    each library's own where it is imported already."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for module in ("transformers.utils.logging", "diffusers.utils.logging",
                   "huggingface_hub.utils"):
        library = sys.modules.get(module)
        if library is not None:
            quiet = getattr(library, "disable_progress_bar", None) or getattr(
                library, "disable_progress_bars", None)
            if quiet is not None:
                quiet()


def job_header(rule: str, wildcards: dict[str, str]) -> str:
    """``rule infer: method=patchcore dataset=mvtec_ad category=bottle``."""
    return f"rule {rule}: " + " ".join(f"{k}={v}" for k, v in wildcards.items())


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             interval: float = 30.0) -> Iterator[T]:
    """Iterate ``iterable`` reporting progress: tqdm on a terminal, else a log line
    at most every ``interval`` seconds and one at the end."""
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, unit=unit)
        return
    start = last = time.perf_counter()
    done = 0
    for done, item in enumerate(iterable, start=1):  # noqa: B007 (done is read after the loop)
        yield item
        now = time.perf_counter()
        if now - last >= interval:
            last = now
            log.info("%s", _line(desc, done, total, unit, now - start))
    log.info("%s", _line(desc, done, total, unit, time.perf_counter() - start))


def _line(desc: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else float("inf")
    if total:
        eta = (total - done) / rate if rate > 0 else float("inf")
        return (f"{desc}: {done}/{total} {unit} ({100 * done / total:.0f} %), "
                f"{elapsed:.0f} s, {rate:.2f} {unit}/s, ~{eta:.0f} s left")
    return f"{desc}: {done} {unit}, {elapsed:.0f} s, {rate:.2f} {unit}/s"
