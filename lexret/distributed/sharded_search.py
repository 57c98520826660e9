"""Search a sharded index: the queries go to every shard, the per-shard top-k lists are merged.

The merge is exact: a document's score is a sum of impacts over its own postings, so it is the
same in its shard as in a single index over all documents; each shard returns its top ``k`` ranked
by score, ties broken by document id ascending (as a single index ranks them), and the global top
``k`` is among the union of those lists, ranked the same way. The run therefore equals the single
index's run, ids and scores.

Shards are searched in this process one after the other, or, with ``ray``, by one Ray actor per
shard (each its own process with its own JVM), all at once.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lexret.distributed.sharding import is_sharded, shard_dirs
from lexret.errors import IndexIntegrityError, LexretError
from lexret.index_meta import QuerySpec, check_compatible, read_meta
from lexret.searcher import DEFAULT_CHUNK, Backend, Searcher, check_queries
from lexret.trec import Run
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)

CPUS_PER_ACTOR = 0.5  # fractional: on a 2-core machine 3 shard actors must fit at once


def merge_runs(runs: Sequence[Run], k: int) -> Run:
    """The top ``k`` of each query over several runs: score descending, then docid ascending."""
    out: Run = {}
    for qid in runs[0]:
        hits = heapq.merge(*(r[qid] for r in runs), key=lambda h: (-h[1], h[0]))
        out[qid] = [h for _, h in zip(range(k), hits)]
    return out


class ShardActor:
    """One shard's :class:`~lexret.searcher.Searcher`, living in a Ray actor (with its own JVM)."""

    def __init__(
        self, shard_dir: str, vocab: Vocabulary, expect: QuerySpec, backend: Backend, heap: str | None,
        options: dict[str, Any],
    ) -> None:  # fmt: skip
        self.searcher = Searcher(shard_dir, vocab, expect=expect, backend=backend, heap=heap, **options)

    def ready(self) -> int:
        return int(self.searcher.meta["num_docs"])

    def search(self, qids: list[str], queries: SparseBatch, k: int, threads: int) -> Run:
        return self.searcher.search(qids, queries, k, threads=threads, chunk_size=max(1, len(qids)), progress=False)


class ShardedSearcher:
    """:class:`~lexret.searcher.Searcher`'s search interface over a sharded index folder."""

    def __init__(
        self,
        index_dir: str | Path,
        vocab: Vocabulary,
        *,
        expect: QuerySpec | None = None,
        backend: Backend = "lucene",
        heap: str | None = None,
        ray: str | None = None,
        cpus_per_actor: float = CPUS_PER_ACTOR,
        **options: Any,
    ) -> None:
        """``options`` are the per-backend settings :class:`~lexret.searcher.Searcher` takes (``seismic``,
        ``two_phase``), applied to every shard."""
        self.index_dir = Path(index_dir)
        self.meta: dict[str, Any] = read_meta(self.index_dir)
        if not is_sharded(self.meta):
            raise LexretError(f"{index_dir} is a single index, not a sharded one")
        spec = expect or QuerySpec()
        spec = QuerySpec(spec.model_id, spec.vocab_hash or vocab.hash, spec.scale)
        check_compatible(self.meta, spec, index_dir)
        self.vocab = vocab
        self.backend_name = backend
        self.ray = ray
        dirs = shard_dirs(self.index_dir, self.meta)
        for d in dirs:
            if not d.is_dir():
                raise IndexIntegrityError(f"shard {d} of {index_dir} is missing; rebuild with `lexret index --shards`")
        self._stack = ExitStack()
        try:
            if ray:
                from lexret.distributed.cluster import connect, start_actors, stop_actors

                self._stack.enter_context(connect(ray))
                args = [(str(d), vocab, spec, backend, heap, options) for d in dirs]
                self._actors = start_actors(ShardActor, args, num_cpus=cpus_per_actor)
                self._stack.callback(stop_actors, self._actors)
                counts = [int(self.meta["shards"][i]["num_docs"]) for i in range(len(dirs))]
            else:
                self._shards = [
                    self._stack.enter_context(Searcher(d, vocab, expect=spec, backend=backend, heap=heap, **options))
                    for d in dirs
                ]
                counts = [int(s.meta["num_docs"]) for s in self._shards]
        except BaseException:
            self._stack.close()
            raise
        if sum(counts) != self.meta["num_docs"]:
            self.close()
            raise IndexIntegrityError(
                f"the shards of {index_dir} hold {sum(counts)} documents, its lexret.json {self.meta['num_docs']}; "
                "rebuild it with `lexret index --shards`"
            )

    def search(self, qids: Sequence[str], queries: SparseBatch, k: int = 10, **kw: Any) -> Run:
        run: Run = {}
        for chunk in self.iter_search(qids, queries, k, **kw):
            run.update(chunk)
        return run

    def iter_search(
        self,
        qids: Sequence[str],
        queries: SparseBatch,
        k: int = 10,
        *,
        threads: int = 1,
        chunk_size: int = DEFAULT_CHUNK,
        progress: bool = True,
    ) -> Iterator[Run]:
        """Like :meth:`lexret.searcher.Searcher.iter_search`: one chunk of queries at a time."""
        check_queries(qids, queries, k)
        desc = f"search ({self.backend_name}, {len(self.meta['shards'])} shards{', Ray' if self.ray else ''})"
        with tqdm(total=len(qids), desc=desc, unit="q", disable=None if progress else True) as bar:
            for a in range(0, len(qids), chunk_size):
                ids = list(qids[a : a + chunk_size])
                chunk = queries.slice(a, a + chunk_size)
                if self.ray:
                    from lexret.distributed.cluster import call_all

                    runs = call_all(self._actors, "search", ids, chunk, k, threads)
                else:
                    runs = [s.search(ids, chunk, k, threads=threads, chunk_size=len(ids), progress=False)
                            for s in self._shards]  # fmt: skip
                yield merge_runs(runs, k)
                bar.update(len(ids))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> ShardedSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_searcher(
    index_dir: str | Path,
    vocab: Vocabulary,
    *,
    expect: QuerySpec | None = None,
    backend: Backend = "lucene",
    heap: str | None = None,
    ray: str | None = None,
    **options: Any,
) -> Searcher | ShardedSearcher:
    """A searcher for ``index_dir``, single or sharded (``ray`` applies to sharded indexes); ``options`` are
    the backend settings :class:`~lexret.searcher.Searcher` takes."""
    meta = read_meta(index_dir, verify_files=False)
    if is_sharded(meta):
        return ShardedSearcher(index_dir, vocab, expect=expect, backend=backend, heap=heap, ray=ray, **options)
    if ray:
        log.warning("--ray applies to sharded indexes; %s is a single index, searched in this process", index_dir)
    return Searcher(index_dir, vocab, expect=expect, backend=backend, heap=heap, **options)
