"""Reading the keys every dataset entry shares: ``root``, ``categories``, flags.

Category names become path components and a Snakemake wildcard
(:data:`diffad.paths.PATHS` ``.manifest``), so they are checked where
they are first seen (the config, or the folders a ``folder`` dataset finds):
:data:`CATEGORY_PATTERN`, not starting with a dot, and not ``all``, which
names the dataset-level view of every category.
"""

from __future__ import annotations

import os
import re
from typing import Any

from diffad.errors import ConfigError, DatasetError

#: What a category name may hold; the workflow's ``category`` wildcard constraint.
CATEGORY_PATTERN = r"[A-Za-z0-9_.+-]+"
#: The category name of the dataset-level view, under which methods that train one
#: model per dataset store it; no dataset may have a category of that name.
ALL_CATEGORIES = "all"
RESERVED_CATEGORIES = (ALL_CATEGORIES,)
ALLOWED_CATEGORY_NAMES = (
    f"letters, digits and _ . + - ({CATEGORY_PATTERN}), not starting with '.', "
    f"not {', '.join(repr(c) for c in RESERVED_CATEGORIES)}"
)
_CATEGORY_RE = re.compile(CATEGORY_PATTERN)


def category_name_problem(category: str) -> str | None:
    """Why ``category`` cannot be a category name, or None when it can."""
    if not _CATEGORY_RE.fullmatch(category):
        return "has characters outside the allowed ones"
    if category.startswith("."):
        return "starts with '.'"
    if category in RESERVED_CATEGORIES:
        return "is reserved for the dataset-level view"
    return None


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
    for cat in cats:
        problem = category_name_problem(cat)
        if problem is not None:
            raise ConfigError(
                f"datasets.{name}.categories: {cat!r} {problem}; a category name may hold "
                f"{ALLOWED_CATEGORY_NAMES}"
            )
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
