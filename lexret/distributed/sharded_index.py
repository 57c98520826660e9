"""Build a sharded index: ``INDEX/shard-000/``, ... each a complete Lucene impact index, plus
``INDEX/lexret.json`` naming them.

The documents are first partitioned by :func:`~lexret.distributed.sharding.shard_of` into
per-shard chunk files inside a work folder beside the target; each shard is then built from its
chunks by the ordinary :class:`~lexret.indexer.Indexer` (one after the other, or as Ray tasks with
``--ray``: the work folder must then be on a file system every worker sees). The finished folder is
moved into place in one step, as single indexes are: a failed shard leaves nothing under the final
name.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lexret.distributed.sharding import MAX_SHARDS, shard_assignment, shard_name, sharded_meta
from lexret.errors import InputError, LexretError
from lexret.index_meta import META_FILE, write_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)

CHUNK_FILE = "chunk-{:05d}.npz"


@dataclass
class ShardedBuild:
    """How many shards, and where they are built (``ray``: ``None`` in process, else a
    :func:`lexret.distributed.cluster.connect` spec: ``local``, ``auto`` or an address)."""

    shards: int
    ray: str | None = None
    cpus_per_task: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise LexretError(f"--shards must be between 1 and {MAX_SHARDS}, got {self.shards}")


def _partition(chunks: Iterable[tuple[list[str], SparseBatch]], parts: Path, n: int, total: int | None) -> list[int]:
    """Write each chunk's rows into ``parts/shard-NNN/chunk-*.npz`` by shard; documents per shard."""
    counts = [0] * n
    dirs = [parts / shard_name(i) for i in range(n)]
    for d in dirs:
        d.mkdir(parents=True)
    with tqdm(total=total, desc="partition", unit="doc", disable=None) as bar:
        for c, (ids, batch) in enumerate(chunks):
            if len(ids) != len(batch):
                raise InputError(f"{len(ids)} document ids for {len(batch)} vectors")
            where = shard_assignment(ids, n)
            for s in np.unique(where).tolist():
                rows = np.nonzero(where == s)[0]
                part = batch.take(rows)
                np.savez(
                    dirs[s] / CHUNK_FILE.format(c),
                    ids=np.array([ids[r] for r in rows.tolist()], dtype=str),
                    indptr=part.indptr, indices=part.indices, values=part.values, dim=np.array(part.dim),
                )  # fmt: skip
                counts[s] += len(rows)
            bar.update(len(ids))
    return counts


def _read_chunks(shard_parts: Path) -> Iterator[tuple[list[str], SparseBatch]]:
    for f in sorted(shard_parts.glob("chunk-*.npz")):
        with np.load(f, allow_pickle=False) as z:
            yield [str(x) for x in z["ids"]], SparseBatch(z["indptr"], z["indices"], z["values"], int(z["dim"]))


def build_shard(
    shard_parts: str, out: str, vocab: Vocabulary, config: IndexConfig, info: IndexInfo, total: int,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one shard's index from its chunk files (in process, or as a Ray task)."""
    return Indexer(vocab, config).build(_read_chunks(Path(shard_parts)), out, info, total=total, extra_meta=extra_meta)


def build_sharded(
    chunks: Iterable[tuple[list[str], SparseBatch]],
    out_dir: str | Path,
    vocab: Vocabulary,
    build: ShardedBuild,
    config: IndexConfig | None = None,
    info: IndexInfo | None = None,
    *,
    total: int | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the sharded index at ``out_dir`` and return its top-level metadata; ``extra_meta`` goes into
    every shard's metadata (e.g. a caption index's ``query_prior``, which each shard's searcher reads)."""
    from lexret.indexer import _swap_into_place

    config = config or IndexConfig()
    info = info or IndexInfo()
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and ((out / META_FILE).exists() or not any(out.iterdir()))):
        raise LexretError(f"{out} exists and is not a lexret index; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.building-{uuid.uuid4().hex[:8]}"
    index, parts = work / "index", work / "parts"
    t0 = time.perf_counter()
    try:
        index.mkdir(parents=True)
        counts = _partition(chunks, parts, build.shards, total)
        if sum(counts) == 0:
            raise InputError("no documents to index")
        if min(counts) == 0:
            raise LexretError(
                f"{sum(counts)} documents leave shard {counts.index(0)} of {build.shards} empty; use fewer --shards"
            )
        jobs = [
            (str(parts / shard_name(i)), str(index / shard_name(i)), vocab, config, info, counts[i], extra_meta)
            for i in range(build.shards)
        ]
        log.info("building %d shards (%s)", build.shards, "Ray tasks" if build.ray else "one after the other")
        if build.ray:
            from lexret.distributed.cluster import connect, map_tasks

            with connect(build.ray):
                metas = map_tasks(build_shard, jobs, num_cpus=build.cpus_per_task, desc="shards")
        else:
            metas = [build_shard(*job) for job in tqdm(jobs, desc="shards", unit="shard", disable=None)]
        meta = sharded_meta(metas, build_seconds=time.perf_counter() - t0)
        write_meta(index, meta)
        _swap_into_place(index, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("sharded index %s: %d shards, %d docs, %.1fs", out, build.shards, meta["num_docs"], meta["build_seconds"])
    return meta
