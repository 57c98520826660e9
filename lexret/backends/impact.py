"""Impact-ordered search within a postings budget: what it does and its parameters.

The engine (:class:`lexret.backends.exact.ImpactOrderedBackend`, compiled with numba beside the exact
engine) loads the quantized document vectors stored with an index (``docvectors.npz``) and holds
every term's posting list in pieces of one block of 128k documents each (a slice of the accumulator
that fits a core's L2 cache), each piece sorted by impact, heaviest first. For one query it

1. picks a threshold on a posting's contribution (query weight x impact), the smallest that leaves
   at most ``max_postings`` postings above it across the query's terms (a binary search over
   per-piece binary searches: microseconds);
2. block by block, adds the head of each term's piece, every posting at or above the threshold,
   into the accumulator (score-at-a-time, as in JASS's anytime ranking, with the budget as the
   stopping rule), and keeps the ``ceil(k x expansion)`` documents with the highest partial scores;
3. scores those exactly from the document vectors (a forward index) and returns the top ``k``, ties
   by docid like Lucene and the exact engine.

Unlike two-phase Lucene (:mod:`lexret.backends.lucene_two_phase`), which drops a query's frequent
terms whole, every term contributes the heads of its list: an image where *man* weighs most is read
even when *man* holds a fifth of the collection. It is approximate: a document whose every posting
lies below the threshold, or whose partial score misses the candidates, is lost. A budget that holds
all of a query's postings gives exactly the exact engine's ranking. The work per query is bounded
by the budget, not by the collection; its cost is the forward index (the stored vectors, in memory).

This module holds no numba (the CLI reads the defaults without compiling anything).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lexret.errors import LexretError


@dataclass(frozen=True)
class ImpactParams:
    """How many postings a query may read, and how many candidates are scored exactly."""

    # postings read per query, at most (issue 17's bound at 1M images: a fifth of v7's 2.7M)
    max_postings: int = 540_000
    # documents scored exactly: ceil(k x expansion) best by partial score (at 1M items and k=10, 20 / 50 /
    # 100 found 83 / 91 / 94% of the exact top 10 within 540,000 postings, at 2.1 / 2.5 / 3.0 ms: docs/compare.md)
    expansion: float = 50.0

    def __post_init__(self) -> None:
        if self.max_postings < 1:
            raise LexretError(f"max postings {self.max_postings} must be at least 1")
        if not self.expansion >= 1.0:
            raise LexretError(f"expansion {self.expansion} must be at least 1")

    def candidates(self, k: int) -> int:
        return math.ceil(k * self.expansion)
