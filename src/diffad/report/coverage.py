"""What a table covers, and the file name that says so.

A run narrowed by the top-level ``categories`` filter must never overwrite
the full experiment's tables: its tables are named
``<experiment>.partial-<categories>`` (the categories joined by ``+``, or
``<n>-categories-<hash>`` when that gets long), and their captions and mean
rows say "partial: N of M categories". Standard library only: the Snakefile
imports this module when the DAG is built.

>>> full = {"mvtec_ad": ["bottle", "cable", "tiles"]}
>>> table_name("exp", None, full), table_name("exp", ["tiles"], full)
('exp', 'exp.partial-tiles')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

#: Longest ``+``-joined category list kept in a file name.
MAX_TAG = 40


def covered_categories(wanted: Sequence[str] | None,
                       categories: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Per dataset, the categories a run with the ``wanted`` filter evaluates."""
    return {dataset: [c for c in names if not wanted or c in wanted]
            for dataset, names in categories.items()}


def is_partial(wanted: Sequence[str] | None, categories: Mapping[str, Sequence[str]]) -> bool:
    """Whether the filter leaves out any category of any dataset."""
    covered = covered_categories(wanted, categories)
    return any(len(covered[d]) < len(names) for d, names in categories.items())


def table_name(experiment: str, wanted: Sequence[str] | None,
               categories: Mapping[str, Sequence[str]]) -> str:
    """``experiment`` for a full run, else a name that says which categories it covers.

    ``wanted`` is the config's ``categories`` filter (None or empty: no filter)
    and ``categories`` each dataset's full category list.
    """
    if not is_partial(wanted, categories):
        return experiment
    covered = list(dict.fromkeys(c for names in covered_categories(wanted, categories).values()
                                 for c in names))
    tag = "+".join(covered)
    if not covered or len(tag) > MAX_TAG:
        # Two different long filters must not share a file: the hash tells them apart.
        digest = hashlib.sha1("+".join(sorted(covered)).encode()).hexdigest()[:6]
        tag = f"{len(covered)}-categories-{digest}"
    return f"{experiment}.partial-{tag}"


def coverage_note(wanted: Sequence[str] | None, categories: Mapping[str, Sequence[str]]) -> str:
    """"partial: N of M categories" per dataset for a filtered run, "" for a full one."""
    if not is_partial(wanted, categories):
        return ""
    covered = covered_categories(wanted, categories)
    return "; ".join(f"{dataset}: partial, {len(covered[dataset])} of {len(names)} categories"
                     for dataset, names in categories.items())
