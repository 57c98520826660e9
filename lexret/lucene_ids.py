"""Which ids Lucene holds: the collection's own (the default) or short ones that sort like them.

By default a lexret index gives Lucene each document's own id (scheme ``collection``), so stock
Anserini and Pyserini searching the folder return the collection's ids.

Short ids are an opt-in (``lexret index --short-ids``, scheme ``rank-base62``). Anserini keeps every
document id three times: as a stored field, as an indexed term and as sorted doc values (the score
tie-breaker), and long collection ids such as ``distractor:1000268201_693b08cb0e`` cost far more
there than the postings they label. With short ids Lucene holds the *rank* of each id in string
order, written in a fixed number of base-62 digits whose ASCII order is numeric order. Lucene then
breaks score ties among the short ids exactly as it would among the real ones (by docid string,
ascending), and lexret's searcher maps a hit's short id back through the sorted list of real ids;
stock Anserini, which knows nothing of ``docids.txt``, returns the short ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lexret.errors import IndexIntegrityError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ascending in ASCII
SCHEME = "rank-base62"  # short ids
COLLECTION_SCHEME = "collection"  # the collection's own ids
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


def uses_short_ids(meta: Mapping[str, Any]) -> bool:
    """Whether the index described by ``meta`` (``lexret.json``) holds short ids in Lucene."""
    info = meta.get("lucene_ids")
    scheme = info.get("scheme") if isinstance(info, Mapping) else None
    if scheme == COLLECTION_SCHEME:
        return False
    if scheme == SCHEME and isinstance(info.get("width"), int) and info["width"] >= 1:
        return True
    raise IndexIntegrityError(
        f"lexret.json names Lucene ids {info!r}, neither {COLLECTION_SCHEME!r} nor {SCHEME!r} with a width; "
        "rebuild the index with `lexret index`"
    )
