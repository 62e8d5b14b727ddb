"""Reading the keys every dataset entry shares: ``root``, ``categories``, flags."""

from __future__ import annotations

import os
from typing import Any

from diffad.errors import ConfigError, DatasetError


def root_of(name: str, cfg: dict[str, Any]) -> str:
    """The dataset's ``root`` as given (relative paths stay relative)."""
    root = cfg.get("root")
    if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
        raise ConfigError(f"datasets.{name}.root is required (a folder path), got {root!r}")
    return os.fspath(root)


def categories_of(name: str, cfg: dict[str, Any]) -> list[str] | None:
    """The listed ``categories``, or None when the entry does not list any."""
    cats = cfg.get("categories")
    if cats is None:
        return None
    if isinstance(cats, str) or not all(isinstance(c, str) and c for c in cats):
        raise ConfigError(f"datasets.{name}.categories must be a list of names, got {cats!r}")
    if len(set(cats)) != len(cats):
        raise ConfigError(f"datasets.{name}.categories lists a category twice: {cats!r}")
    return list(cats)


def flag_of(name: str, cfg: dict[str, Any], key: str, default: bool = False) -> bool:
    """A boolean entry ``key`` (``download``, ...)."""
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"datasets.{name}.{key} must be true or false, got {value!r}")
    return value


def require_root(root: str, how_to_get: str) -> None:
    """Raise DatasetError naming ``root`` and telling how to get the data, if it is absent."""
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder {root} not found. {how_to_get}")


def is_missing_or_empty(root: str) -> bool:
    """True if ``root`` does not exist or is an empty folder (nothing downloaded yet)."""
    return not os.path.exists(root) or (os.path.isdir(root) and not os.listdir(root))
