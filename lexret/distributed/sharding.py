"""How a sharded index is laid out: which shard holds a document, and its top-level ``lexret.json``.

A document goes to shard ``blake2b-64(id) mod N``: stable across runs, machines and Python
versions (unlike ``hash()``), and independent of the input order, so any worker can tell where an
id lives. Each shard is a complete index folder (:mod:`lexret.indexer`); the top-level
``lexret.json`` names them and carries what every shard shares (model, vocabulary, quantization).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SCHEME = "blake2b64-mod"
SHARD_DIR = "shard-{:03d}"
MAX_SHARDS = 1000
# Top-level fields copied from shard 0: each shard was built with the same settings and vocabulary.
SHARED_FIELDS = ("format", "lexret_version", "model_id", "modality", "source", "vocab_hash", "vocab_size",
                 "quantization", "config", "has_docvectors")  # fmt: skip


def shard_of(docid: str, n: int) -> int:
    """The shard (``0 .. n - 1``) that holds ``docid``."""
    h = hashlib.blake2b(docid.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") % n


def shard_assignment(ids: Sequence[str], n: int) -> np.ndarray:
    """:func:`shard_of` for each id."""
    return np.fromiter((shard_of(d, n) for d in ids), dtype=np.int64, count=len(ids))


def shard_name(i: int) -> str:
    return SHARD_DIR.format(i)


def is_sharded(meta: dict[str, Any]) -> bool:
    return bool(meta.get("shards"))


def shard_dirs(index_dir: str | Path, meta: dict[str, Any]) -> list[Path]:
    return [Path(index_dir) / s["name"] for s in meta["shards"]]


def sharded_meta(shard_metas: list[dict[str, Any]], *, build_seconds: float) -> dict[str, Any]:
    """The top-level ``lexret.json`` of a sharded index made of ``shard_metas`` (in shard order)."""
    first = shard_metas[0]
    n = sum(m["num_docs"] for m in shard_metas)
    nnz = sum(m["num_postings"] for m in shard_metas)
    return {
        **{k: first.get(k) for k in SHARED_FIELDS},
        "backend": "lucene-impact-sharded",
        "num_docs": n,
        "num_postings": nnz,
        "impact_sum": sum(m["impact_sum"] for m in shard_metas),
        "avg_doc_terms": nnz / n if n else 0.0,
        "empty_docs": [d for m in shard_metas for d in m.get("empty_docs", [])],
        "build_seconds": round(build_seconds, 3),
        "files": {},  # the Lucene files are listed in each shard's own lexret.json
        "index_bytes": sum(m["index_bytes"] for m in shard_metas),
        "lucene_ids": {"per_shard": True},
        "sharding": {"scheme": SCHEME, "count": len(shard_metas)},
        "shards": [{"name": shard_name(i), "num_docs": m["num_docs"]} for i, m in enumerate(shard_metas)],
    }
