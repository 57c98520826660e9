"""Short document ids for the Lucene index that sort like the real ones.

Anserini keeps every document id three times: as a stored field, as an indexed term and as sorted
doc values (the score tie-breaker). Collection ids such as ``distractor:1000268201_693b08cb0e``
cost far more there than the postings they label: 2.5 of 13.9 MB for 100,000 images. lexret
therefore gives Lucene the *rank* of each id in string order, written in a fixed number of base-62
digits whose ASCII order is numeric order. Lucene then breaks score ties among the short ids
exactly as it would among the real ones (by docid string, ascending), and the searcher maps a
hit's short id back through the sorted list of real ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ascending in ASCII
SCHEME = "rank-base62"
_BASE = len(ALPHABET)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def width_for(n: int) -> int:
    """Digits needed to write ranks ``0 .. n - 1``."""
    w = 1
    while _BASE**w < n:
        w += 1
    return w


def encode(rank: int, width: int) -> str:
    """``rank`` in ``width`` base-62 digits, most significant first."""
    if not 0 <= rank < _BASE**width:
        raise ValueError(f"rank {rank} does not fit in {width} base-62 digits")
    out = []
    for _ in range(width):
        rank, d = divmod(rank, _BASE)
        out.append(ALPHABET[d])
    return "".join(reversed(out))


def decode(short: str) -> int:
    """The rank written by :func:`encode`."""
    r = 0
    for c in short:
        r = r * _BASE + _VALUE[c]
    return r


def string_ranks(ids: Sequence[str]) -> np.ndarray:
    """Rank of each id among ``ids`` in string (code point, hence UTF-8 byte) order."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(len(ids))
    return ranks
