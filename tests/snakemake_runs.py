"""Running the real workflow from tests: snakemake in a folder, its dry-run plan, copies.

The embedded default runs once per test run (the ``default_run`` fixture of
conftest.py); a test that changes a config or an output works on a copy of it
(:func:`copy_run`), so that no test depends on another's order.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, check: bool = True, cores: int = 2,
              timeout: int = 1800) -> subprocess.CompletedProcess:
    """``snakemake`` on the repository's Snakefile in ``workdir`` (its config/config.yaml)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", str(cores), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-4000:]}")
    return result


def planned_jobs(dry_run: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for line in dry_run.splitlines():
        if rule := re.match(r"^\s*(?:local)?rule (\w+):", line):
            jobs.append((rule.group(1), ""))
        elif (wildcards := re.match(r"^\s+wildcards: (.*)$", line)) and jobs:
            jobs[-1] = (jobs[-1][0], wildcards.group(1))
    return [(rule, w) for rule, w in jobs if rule != "all"]


def read_config(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "config" / "config.yaml").read_text())


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def copy_run(run: Path, to: Path) -> Path:
    """A copy of a finished run's folder (results, logs, Snakemake's metadata), file times
    kept, so that snakemake sees it as up to date."""
    shutil.copytree(run, to, symlinks=True)
    return to


def mtimes(workdir: Path, *parts: str) -> dict[Path, int]:
    """Modification times of every results file whose path holds all of ``parts``."""
    return {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*")
            if p.is_file() and all(part in str(p.relative_to(workdir)) for part in parts)}
