"""Recovering from a killed Snakemake: remove its directory lock when nobody holds it.

Snakemake locks a working directory while it runs (``.snakemake/locks/``). A
``kill -9`` (an OOM killer, a lost ssh session without tmux) leaves the lock
behind, and the next run refuses to start ("Directory cannot be locked").
``snakemake --unlock`` removes it, but is wrong while another Snakemake still
runs in that directory. :func:`unlock_if_stale` removes the lock only when no
live ``snakemake`` process works in the directory::

    python -m diffad.locks [WORKDIR]     # prints what it did; `make run` calls it

It reads /proc (Linux) and never imports snakemake.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def lock_files(workdir: str | os.PathLike) -> list[Path]:
    """The lock files Snakemake left in ``workdir`` (none when it is unlocked)."""
    locks = Path(workdir) / ".snakemake" / "locks"
    return sorted(p for p in locks.iterdir() if p.is_file()) if locks.is_dir() else []


def snakemake_processes(workdir: str | os.PathLike) -> list[int]:
    """PIDs of live snakemake processes whose working directory is ``workdir``."""
    target = Path(workdir).resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone, or not ours to read
            continue
        command = b" ".join(argv).decode(errors="replace")
        if "snakemake" not in command or "diffad.locks" in command:
            continue
        # `-d DIR` / `--directory DIR` set the working directory too.
        for flag in ("-d", "--directory"):
            if flag.encode() in argv[:-1]:
                cwd = (cwd / argv[argv.index(flag.encode()) + 1].decode()).resolve()
        if cwd == target:
            found.append(int(entry.name))
    return found


def unlock_if_stale(workdir: str | os.PathLike = ".") -> str:
    """Remove a stale lock of ``workdir``; say what was found and done."""
    locks = lock_files(workdir)
    if not locks:
        return "no snakemake lock"
    holders = snakemake_processes(workdir)
    if holders:
        return (f"snakemake is running here (pid {', '.join(map(str, holders))}); "
                "its lock stays")
    shutil.rmtree(Path(workdir) / ".snakemake" / "locks")
    return (f"removed a stale snakemake lock ({len(locks)} file(s)) left by a killed run; "
            "`rerun-incomplete` redoes its unfinished jobs")


if __name__ == "__main__":
    print(unlock_if_stale(sys.argv[1] if len(sys.argv) > 1 else "."))
