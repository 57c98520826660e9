"""What the cross-validation tools (``cv_ratio.py``, ``cv_compare.py``) share: picking the sparse
system of a ``lexret eval`` report, a direction's summed recalls, and ending on a missing or foreign
report with its message."""

from __future__ import annotations

import logging
from collections.abc import Callable


def sparse_system(systems: dict, sparse: str | None) -> tuple[str, dict]:
    """``(name, figures)`` of the report's ``sparse`` system, or (None) of its one ``sparse-lucene*``
    system; a report with none, several or no such name asks for ``--sparse``."""
    from lexret.errors import LexretError

    names = [sparse] if sparse else [n for n in systems if n.startswith("sparse-lucene")]
    if len(names) != 1 or names[0] not in systems:
        raise LexretError(f"name the sparse system (--sparse): the report has {sorted(systems)}")
    return names[0], systems[names[0]]


def recall_part(system: dict, direction: str) -> float:
    """R@1 + R@5 + R@10 of one direction (``t2i`` or ``i2t``) of a report's system: its part of RSUM."""
    return float(sum(system[direction][f"R@{k}"] for k in (1, 5, 10)))


def run_tool(run: Callable[[list[str] | None], int], argv: list[str] | None, log: logging.Logger) -> int:
    """``run(argv)``; a user error (missing or foreign report, bad option value) is logged as one
    message and gives exit code 2 instead of a traceback."""
    from lexret.errors import LexretError

    try:
        return run(argv)
    except (LexretError, OSError, ValueError, KeyError) as e:
        log.error("%s", e)
        return 2
