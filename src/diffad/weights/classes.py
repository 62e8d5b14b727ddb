"""Classes that sources name by string, looked up in the installed library.

Sources name classes as strings so that the registry (read when the DAG is
built) imports neither diffusers nor transformers; the lookup happens when
weights are fetched or loaded, and names the installed version when the class
is missing (e.g. ``AutoModelForVision2Seq``, renamed
``AutoModelForImageTextToText`` in transformers 5).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from diffad.errors import ConfigError


def library_class(library: str, cls: str | type | None, default: str) -> Any:
    """``cls`` if it is a class, else the attribute ``cls`` (or ``default``) of ``library``."""
    if isinstance(cls, type):
        return cls
    name = cls or default
    module = importlib.import_module(library)
    try:
        return getattr(module, name)
    except AttributeError:
        version = importlib.metadata.version(library.replace("_", "-"))
        raise ConfigError(f"{library} {version} has no class {name!r}") from None
