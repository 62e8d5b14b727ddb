"""Send a job's output to its log file, so a failed cluster job can be read afterwards."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Iterator


def job_context() -> str:
    """Host, and the scheduler's job id and GPU allocation when there is one."""
    keys = ("SLURM_JOB_ID", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "SLURM_CPUS_PER_TASK")
    found = [f"{key}={os.environ[key]}" for key in keys if key in os.environ]
    return " ".join([f"host={socket.gethostname()}", *found])


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None) -> Iterator[logging.Logger]:
    """Route logging, stdout and stderr (progress bars included) into ``path``.

    An exception is written to the log with its traceback and re-raised, so
    Snakemake still marks the job as failed. ``None`` leaves the streams alone.
    """
    logger = logging.getLogger("diffad")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield logger
        return
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "a", buffering=1) as stream, \
            contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logger.info("job context: %s", job_context())
        try:
            yield logger
        except BaseException:
            traceback.print_exc(file=stream)
            raise
        finally:
            root.removeHandler(handler)
