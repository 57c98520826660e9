"""Search an index folder with pre-encoded sparse query vectors.

The searcher reads the folder's ``lexret.json``, refuses queries from another model, vocabulary or
scale, quantizes float queries with the index's own quantizer, and searches in chunks so that the
JVM heap (which holds every hit of a batch) stays bounded.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from lexret.backends.impact import ImpactParams
from lexret.backends.lucene_two_phase import TwoPhaseParams
from lexret.backends.seismic import SeismicSearchParams
from lexret.document_prior import META_KEY, add_query_prior
from lexret.errors import IndexIntegrityError, IndexMismatchError, LexretError
from lexret.index_meta import QuerySpec, check_compatible, engine_of, read_meta
from lexret.quantize import Quantizer
from lexret.trec import Run
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)

Backend = Literal["lucene", "lucene-2phase", "exact", "impact", "scipy", "seismic"]
BACKENDS: tuple[str, ...] = ("lucene", "lucene-2phase", "exact", "impact", "scipy", "seismic")
# The engine whose files a backend searches; None: any folder that stores its vectors.
_ENGINE_OF_BACKEND = {
    "lucene": "lucene", "lucene-2phase": "lucene", "seismic": "seismic", "exact": None, "impact": None, "scipy": None,
}  # fmt: skip
DEFAULT_CHUNK = 1000


def _one(prior: dict[str, Any]) -> SparseBatch:
    """The prior term alone at its float query weight (to quantize it like a query)."""
    term = int(prior["term_id"])
    weight = np.array([float(prior["query_weight"])], np.float32)
    return SparseBatch(np.array([0, 1]), np.array([term]), weight, term + 1)


class Searcher:
    """Batch search over a lexret index folder: Lucene, two-phase Lucene (:mod:`lexret.backends.lucene_two_phase`,
    tuned by ``two_phase``), the exact term-at-a-time engine over the stored vectors (``exact``, numba),
    impact-ordered search within a postings budget over the same vectors (``impact``, approximate, tuned by
    ``impact``: :mod:`lexret.backends.impact`), Seismic (approximate) or the scipy brute force (``scipy``,
    the slow reference).

    The backend must match the folder's engine (``lucene`` and ``lucene-2phase`` search a Lucene folder,
    ``seismic`` a Seismic one); ``exact``, ``impact`` and ``scipy`` search any folder that stores its
    vectors."""

    def __init__(
        self,
        index_dir: str | Path,
        vocab: Vocabulary,
        *,
        expect: QuerySpec | None = None,
        backend: Backend = "lucene",
        heap: str | None = None,
        seismic: SeismicSearchParams | None = None,
        two_phase: TwoPhaseParams | None = None,
        impact: ImpactParams | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.meta: dict[str, Any] = read_meta(self.index_dir)
        spec = expect or QuerySpec()
        check_compatible(self.meta, QuerySpec(spec.model_id, spec.vocab_hash or vocab.hash, spec.scale), index_dir)
        q = self.meta["quantization"]
        self.quantizer = Quantizer(q["scale"], q["max_impact"])
        self.vocab = vocab
        self.queries_quantized = spec.scale is not None
        self.backend_name = backend
        self.seismic_params = seismic or SeismicSearchParams()
        self._check_engine(backend)
        if backend == "lucene":
            self._lucene = self._open_lucene(heap)
        elif backend == "lucene-2phase":
            from lexret.backends.lucene_two_phase import TwoPhaseLuceneBackend

            ids, docs = self.load_docvectors(backend)
            self._lucene = self._open_lucene(heap)
            self._two_phase = TwoPhaseLuceneBackend(self._lucene, ids, docs, vocab.tokens, two_phase)
        elif backend == "scipy":
            from lexret.backends.scipy_sparse import ScipySparseBackend

            ids, docs = self.load_docvectors(backend)
            self._scipy = ScipySparseBackend(ids, docs)
        elif backend == "exact":
            from lexret.backends.exact import ExactBackend

            ids, docs = self.load_docvectors(backend)
            self._exact = ExactBackend(ids, docs)
        elif backend == "impact":
            from lexret.backends.exact import ImpactOrderedBackend

            ids, docs = self.load_docvectors(backend)
            self._exact = ImpactOrderedBackend(ids, docs, impact)
        else:
            from lexret.backends.seismic import INDEX_FILE, SeismicBackend

            self._seismic = SeismicBackend(self.index_dir / INDEX_FILE, self.load_docids(), len(vocab))
            if self._seismic.num_docs != self.meta["num_docs"] - len(self.meta.get("empty_docs", [])):
                raise IndexIntegrityError(
                    f"Seismic holds {self._seismic.num_docs} documents, lexret.json says {self.meta['num_docs']} "
                    f"(of which {len(self.meta.get('empty_docs', []))} empty); rebuild the index with "
                    f"`lexret index --engine seismic --out {self.index_dir}`"
                )

    def _check_engine(self, backend: str) -> None:
        """Refuse a backend that cannot search the folder's engine, naming what can."""
        if backend not in BACKENDS:
            raise LexretError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        engine, wanted = engine_of(self.meta), _ENGINE_OF_BACKEND[backend]
        if wanted is not None and engine != wanted:
            raise IndexMismatchError(
                f"index {self.index_dir} was built by {engine}, the {backend} backend searches {wanted} indexes: "
                f"search it with --backend {engine} (or scipy, exact), or rebuild it with "
                f"`lexret index --engine {wanted} --out {self.index_dir}`"
            )

    def _open_lucene(self, heap: str | None):
        from lexret.backends.lucene import LuceneImpactBackend
        from lexret.lucene_ids import uses_short_ids

        # short ids are mapped back through the sorted real ids; collection ids come back as they are
        sorted_ids = sorted(self.load_docids()) if uses_short_ids(self.meta) else None
        lucene = LuceneImpactBackend(self.index_dir, heap=heap, sorted_ids=sorted_ids)
        if lucene.num_docs != self.meta["num_docs"] - len(self.meta.get("empty_docs", [])) and (
            lucene.num_docs != self.meta["num_docs"]
        ):
            raise IndexIntegrityError(
                f"Lucene holds {lucene.num_docs} documents, lexret.json says {self.meta['num_docs']}; "
                "rebuild the index with `lexret index`"
            )
        return lucene

    def load_docids(self) -> list[str]:
        """The documents' ids in the order they were given to the indexer (``docids.txt``)."""
        path = self.index_dir / "docids.txt"
        if not path.is_file():
            raise IndexIntegrityError(f"{self.index_dir} lacks docids.txt; rebuild the index with `lexret index`")
        ids = path.read_text(encoding="utf-8").splitlines()
        if len(ids) != self.meta["num_docs"]:
            raise IndexIntegrityError(
                f"{path} lists {len(ids)} ids, lexret.json {self.meta['num_docs']} documents; rebuild the index"
            )
        return ids

    def load_docvectors(self, backend: str = "scipy") -> tuple[list[str], SparseBatch]:
        """The quantized document vectors stored beside the index (``--store-vectors``)."""
        path = self.index_dir / "docvectors.npz"
        if not path.is_file():
            raise LexretError(
                f"{self.index_dir} keeps no document vectors, which the {backend} backend needs; "
                "rebuild it with `lexret index` without --no-store-vectors, or search with --backend lucene"
            )
        ids = self.load_docids()
        try:
            with np.load(path) as z:
                docs = SparseBatch(z["indptr"], z["indices"], z["values"], len(self.vocab))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise IndexIntegrityError(f"{path} is unreadable ({e}); rebuild the index with `lexret index`") from None
        if len(ids) != len(docs):
            raise IndexIntegrityError(f"{self.index_dir}: docids.txt and docvectors.npz disagree; rebuild the index")
        if docs.nnz and (not docs.is_integer or docs.values.min() < 1):
            raise IndexIntegrityError(
                f"{path} holds weights that are not positive integer impacts; rebuild the index with `lexret index`"
            )
        return ids, docs

    def prepare(self, queries: SparseBatch) -> SparseBatch:
        """Integer query impacts. Queries declared quantized (``expect.scale`` set, and checked
        against the index) pass as they are; all others go through the index's own quantizer."""
        if queries.dim != len(self.vocab):
            raise LexretError(f"queries have dim {queries.dim}, the vocabulary {len(self.vocab)} terms")
        prior = self.meta.get(META_KEY)
        if self.queries_quantized:
            if not queries.is_integer:
                raise LexretError(
                    "queries were declared quantized (--scale) but hold non-integer weights; "
                    "drop --scale to let the index quantize them"
                )
            out = queries.threshold(0)
            if prior is not None:  # the prior term's weight, quantized as the index's quantizer would
                out = add_query_prior(out, {**prior, "query_weight": self.quantizer(_one(prior)).values[0]})
            return out
        return self.quantizer(queries if prior is None else add_query_prior(queries, prior))

    def search(
        self,
        qids: Sequence[str],
        queries: SparseBatch,
        k: int = 10,
        *,
        threads: int = 1,
        chunk_size: int = DEFAULT_CHUNK,
        progress: bool = True,
    ) -> Run:
        """Top-``k`` documents per query, as ``{qid: [(docid, score), ...]}`` best first."""
        run: Run = {}
        for chunk in self.iter_search(qids, queries, k, threads=threads, chunk_size=chunk_size, progress=progress):
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
        """Like :meth:`search`, one chunk of queries at a time: memory (the JVM heap and Python's)
        holds one chunk's hits, whatever the number of queries and k."""
        check_queries(qids, queries, k)
        q = self.prepare(queries)
        toks = self.vocab.tokens
        with tqdm(
            total=len(qids), desc=f"search ({self.backend_name})", unit="q", disable=None if progress else True
        ) as bar:
            for a in range(0, len(qids), chunk_size):
                chunk_ids = list(qids[a : a + chunk_size])
                chunk = q.slice(a, a + chunk_size)
                if self.backend_name == "lucene":
                    dicts = [
                        {toks[j]: int(v) for j, v in zip(*(x.tolist() for x in chunk.row(i)))}
                        for i in range(len(chunk))
                    ]
                    yield self._lucene.search(chunk_ids, dicts, k, threads=threads)
                elif self.backend_name in ("exact", "impact"):
                    yield self._exact.search(chunk_ids, chunk, k, threads=threads)
                elif self.backend_name == "seismic":
                    yield self._seismic.search(chunk_ids, chunk, k, self.seismic_params, threads=threads)
                elif self.backend_name == "lucene-2phase":
                    yield self._two_phase.search(chunk_ids, chunk, k, threads=threads)
                else:
                    yield self._scipy.search(chunk_ids, chunk, k)
                bar.update(len(chunk_ids))

    def close(self) -> None:
        if self.backend_name in ("lucene", "lucene-2phase"):
            self._lucene.close()
        elif self.backend_name in ("exact", "impact"):
            self._exact.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_queries(qids: Sequence[str], queries: SparseBatch, k: int) -> None:
    """The checks every searcher makes before any work: one unique id per query vector, k >= 1."""
    if len(qids) != len(queries):
        raise LexretError(f"{len(qids)} query ids for {len(queries)} query vectors")
    if k < 1:
        raise LexretError("k must be at least 1")
    if len(set(qids)) != len(qids):
        raise LexretError("query ids must be unique")
