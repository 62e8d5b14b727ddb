"""After `kill -9` of snakemake itself, the stale directory lock is removed, and only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_workflow import REPO, small_config, snakemake, write_config

from diffad.locks import lock_files, snakemake_processes, unlock_if_stale

pytestmark = pytest.mark.workflow


def test_a_killed_snakemake_leaves_a_lock_that_make_run_removes(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
           str(tmp_path), "--cores", "1"]
    running = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not lock_files(tmp_path) and time.time() < deadline:
        time.sleep(0.1)
    assert lock_files(tmp_path)
    # While snakemake runs, its lock is kept.
    assert running.pid in snakemake_processes(tmp_path)
    assert "its lock stays" in unlock_if_stale(tmp_path)
    os.kill(running.pid, signal.SIGKILL)
    running.wait()
    target = "results/data/synthetic/tiles.parquet"
    blocked = snakemake(tmp_path, target, check=False)
    assert blocked.returncode != 0 and "cannot be locked" in blocked.stdout + blocked.stderr
    # What `make run` does first:
    out = subprocess.run([sys.executable, "-m", "diffad.locks", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "removed a stale snakemake lock" in out
    assert not lock_files(tmp_path)
    snakemake(tmp_path, target)  # runs: the directory is free again
    assert (tmp_path / target).is_file()
    assert unlock_if_stale(tmp_path) == "no snakemake lock"

