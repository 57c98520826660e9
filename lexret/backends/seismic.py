"""Approximate learned-sparse search with Seismic (``pyseismic-lsr``): the only module that imports it.

Seismic (Bruch, Nardini, Rulli, Venturini; SIGIR 2024) keeps, per term, the ``n_postings``-ish
heaviest postings, groups each list into blocks by clustering its documents, and stores per block
a summary vector (the coordinate-wise maximum, cut to ``summary_energy`` of its mass). A query
visits only its ``query_cut`` heaviest terms and skips every block whose summary score is below
``heap_factor`` times the current ``k``-th score; the documents of the blocks it visits are
scored exactly from a forward index. Documents are given to Seismic by row number (the component
ids are lexret's vocabulary ids), so the index holds no id strings; lexret maps rows back through
``docids.txt``.

Seismic stores weights as 16-bit floats, which hold every integer up to 2048 exactly: with lexret's
integer impacts in that range the scores Seismic returns are the exact integer dot products of the
documents it finds, so hits are re-sorted here with lexret's (and Lucene's) tie rule, score
descending then document id ascending.

The Rust library prints its progress on standard output; it is sent to standard error here, so
that a command's output stays its own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexret.errors import IndexIntegrityError, LexretError
from lexret.types import SparseBatch

log = logging.getLogger(__name__)

INDEX_FILE = "index.seismic"
_SUFFIX = ".index.seismic"  # Seismic's ``save(p)`` writes ``p + _SUFFIX``
# Largest integer a 16-bit float (Seismic's stored weight) represents exactly, with all below it.
MAX_EXACT_IMPACT = 2048


@dataclass(frozen=True)
class SeismicBuildParams:
    """How Seismic builds its index (the library's names and, unless stated, its defaults).

    ``n_postings``: postings kept per term on average (the heaviest; the rest are dropped).
    ``centroid_fraction``: share of a list's documents that become block centroids.
    ``summary_energy``: share of a block summary's L1 mass kept.
    ``max_fraction``: no list keeps more than ``n_postings * max_fraction`` postings.
    ``doc_cut``: terms of a document used to cluster it into a block.

    ``n_postings`` 10000 is lexret's default, chosen from the curve in docs/seismic.md: at 1M
    images (v7's vectors) 3,500 (the library's default) reaches at most 0.94 overlap@10 with the
    exact top-10, 10,000 reaches 0.99 with the default search settings.
    """

    n_postings: int = 10000
    centroid_fraction: float = 0.1
    summary_energy: float = 0.4
    min_cluster_size: int = 2
    max_fraction: float = 1.5
    doc_cut: int = 15

    def __post_init__(self) -> None:
        if self.n_postings < 1 or self.min_cluster_size < 1 or self.doc_cut < 1:
            raise LexretError("Seismic's n_postings, min_cluster_size and doc_cut must be at least 1")
        if not 0 < self.centroid_fraction <= 1 or not 0 < self.summary_energy <= 1:
            raise LexretError("Seismic's centroid_fraction and summary_energy must lie in (0, 1]")
        if self.max_fraction < 1:
            raise LexretError("Seismic's max_fraction must be at least 1")


@dataclass(frozen=True)
class SeismicSearchParams:
    """How Seismic searches: the ``query_cut`` heaviest query terms are used; a block is skipped
    when its summary score is below ``heap_factor`` times the current ``k``-th score. Summaries
    are lossy (not upper bounds), so even 1 skips blocks that hold top documents; smaller values
    skip fewer blocks: more accurate, slower (and at 1M not faster to reach the same overlap).
    Defaults from docs/seismic.md: 10 terms and 0.9 gave 0.986 overlap@10 at 1M images."""

    query_cut: int = 10
    heap_factor: float = 0.9

    def __post_init__(self) -> None:
        if self.query_cut < 1:
            raise LexretError("Seismic's query_cut must be at least 1")
        if not 0 < self.heap_factor <= 1:
            raise LexretError("Seismic's heap_factor must lie in (0, 1]")


def _seismic():
    try:
        import seismic
    except ImportError:
        raise LexretError("Seismic is not installed; run `make setup` (pyseismic-lsr==0.5.4)") from None
    return seismic


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what native code writes on file descriptor 1 to descriptor 2 for the block."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to redirect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def check_exact_range(docs: SparseBatch) -> None:
    """Refuse impacts that Seismic's 16-bit weights cannot hold exactly."""
    top = int(docs.values.max()) if docs.nnz else 0
    if not docs.is_integer or top > MAX_EXACT_IMPACT:
        raise LexretError(
            f"Seismic stores weights as 16-bit floats, exact for integer impacts up to {MAX_EXACT_IMPACT}; these "
            f"documents hold impacts up to {top}: rebuild with a smaller --scale or --max-impact {MAX_EXACT_IMPACT}"
        )


def build_seismic_index(docs: SparseBatch, out_file: str | Path, params: SeismicBuildParams, *,
                        threads: int = 1) -> None:  # fmt: skip
    """Index the quantized rows of ``docs`` (Seismic ids = row numbers) into ``out_file``."""
    check_exact_range(docs)
    seismic = _seismic()
    out_file = Path(out_file)
    if out_file.name != INDEX_FILE:
        raise ValueError(f"the Seismic index file must be named {INDEX_FILE}")
    dataset = seismic.SeismicDataset(dim=docs.dim)
    n = dataset.add_documents_by_id(
        [str(i) for i in range(len(docs))],
        docs.indices.astype(np.int64),
        docs.values.astype(np.float32),
        docs.indptr.astype(np.int64),
    )
    log.info("Seismic: indexing %d non-empty documents of %d", n, len(docs))
    with _stdout_to_stderr():
        index = seismic.SeismicIndex.build_from_dataset(
            dataset,
            n_postings=params.n_postings,
            centroid_fraction=params.centroid_fraction,
            min_cluster_size=params.min_cluster_size,
            summary_energy=params.summary_energy,
            max_fraction=params.max_fraction,
            doc_cut=params.doc_cut,
            num_threads=max(1, threads),
        )
        # Seismic appends its own suffix to the path it is given
        stem = out_file.parent / f".{out_file.name}.saving"
        index.save(str(stem))
    Path(str(stem) + _SUFFIX).replace(out_file)


class SeismicBackend:
    """Top-k search over a saved Seismic index whose documents are the rows of ``docids``."""

    def __init__(self, index_file: str | Path, docids: Sequence[str], dim: int) -> None:
        seismic = _seismic()
        path = Path(index_file)
        if not path.is_file():
            raise IndexIntegrityError(f"{path} is missing; rebuild the index with `lexret index --engine seismic`")
        try:
            with _stdout_to_stderr():
                self._index = seismic.SeismicIndex.load(str(path))
        except BaseException as e:  # a damaged file surfaces as a Rust panic (not an Exception subclass)
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            raise IndexIntegrityError(
                f"Seismic cannot read {path} ({type(e).__name__}: {str(e)[:200]}); "
                "rebuild the index with `lexret index --engine seismic`"
            ) from None
        self.docids = list(docids)
        if int(self._index.len) > len(self.docids):
            raise IndexIntegrityError(
                f"{path} holds {self._index.len} documents, docids.txt {len(self.docids)}; "
                "rebuild the index with `lexret index --engine seismic`"
            )
        order = sorted(range(len(self.docids)), key=self.docids.__getitem__)
        self._tie_rank = np.empty(len(order), dtype=np.int64)
        self._tie_rank[order] = np.arange(len(order))
        self._str = seismic.get_seismic_string()
        # component id -> the string Seismic knows it by (``add_documents_by_id`` names component j "j")
        self._components = np.array([str(j) for j in range(dim)], dtype=self._str)

    @property
    def num_docs(self) -> int:
        return int(self._index.len)

    def search(
        self,
        qids: Sequence[str],
        queries: SparseBatch,
        k: int,
        params: SeismicSearchParams | None = None,
        *,
        threads: int = 1,
    ) -> dict[str, list[tuple[str, float]]]:
        """Top-``k`` documents per query (positive scores only), best first, ties by document id."""
        if len(qids) != len(queries):
            raise ValueError("qids and queries differ in length")
        p = params or SeismicSearchParams()
        out: dict[str, list[tuple[str, float]]] = {q: [] for q in qids}
        rows = [i for i in range(len(queries)) if queries.indptr[i + 1] > queries.indptr[i]]
        if not rows:
            return out
        comps, vals = [], []
        for i in rows:
            idx, val = queries.row(i)
            comps.append(self._components[idx])
            vals.append(val.astype(np.float32))
        names = np.array([str(i) for i in rows], dtype=self._str)
        results = self._index.batch_search(
            names, comps, vals, k=int(k), query_cut=p.query_cut, heap_factor=p.heap_factor, num_threads=max(1, threads)
        )
        # batch_search does not keep the input order: each hit names its query (the row number here)
        for hits in results:
            if hits:
                out[qids[int(hits[0][0])]] = self._ranked(hits, k)
        return out

    def _ranked(self, hits: list[tuple[str, float, str]], k: int) -> list[tuple[str, float]]:
        if not hits:
            return []
        rows = np.fromiter((int(h[2]) for h in hits), dtype=np.int64, count=len(hits))
        scores = np.rint(np.fromiter((h[1] for h in hits), dtype=np.float64, count=len(hits)))
        keep = scores > 0
        rows, scores = rows[keep], scores[keep]
        order = np.lexsort((self._tie_rank[rows], -scores))[:k]
        return [(self.docids[r], float(s)) for r, s in zip(rows[order].tolist(), scores[order].tolist())]
