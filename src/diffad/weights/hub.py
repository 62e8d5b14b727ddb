"""Everything that talks to the model hub, or forbids it.

Only :func:`~diffad.weights.fetch.fetch_weights` (the local rule, on a machine
with internet) reaches the hub. Every loader runs inside :func:`hub_offline`:
``HF_HUB_OFFLINE=1`` makes any request that slipped through (a config, a
remote-code module, a tokenizer file) fail at once instead of hanging on an
offline compute node or silently pulling other files than the cached ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def is_local_folder(repo_id: str) -> bool:
    """A ``repo_id`` that names an existing folder (``from_pretrained`` reads it as such)."""
    return Path(repo_id).expanduser().is_dir()


def resolve_revision(repo_id: str, revision: str | None) -> str | None:
    """The commit that ``revision`` (None: the default branch) of a hub repo points to now.

    Fetching that exact commit, and recording it, makes the cache say which
    weights it holds even when the source follows a branch. None for a local folder.
    """
    if is_local_folder(repo_id):
        return None
    from huggingface_hub import HfApi

    return HfApi().model_info(repo_id, revision=revision).sha


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Switch the Hugging Face hub off for the block, then restore the previous state.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import, so the constant
    is set as well as the environment (which covers libraries imported later
    and child processes). Restoring keeps a later fetch in the same process
    (tests, interactive sessions) working.
    """
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = None
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm-only installs
        pass
    old_const = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
