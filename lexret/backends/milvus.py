"""Milvus as a serving engine for lexret vectors: the only module that imports ``pymilvus``.

A collection holds one entity per document: its id (``VARCHAR`` primary key) and its quantized
impacts as a ``SPARSE_FLOAT_VECTOR`` (term id -> impact), indexed with ``SPARSE_INVERTED_INDEX``
for inner product. Its description carries lexret's metadata (model id, vocabulary hash,
quantization), so that a search refuses queries of another model, vocabulary or scale, as index
folders do.

The URI is a local file for the embedded engine (``milvus-lite``, the 2.5.x C++ engine) or
``http://host:19530`` for a Milvus server or cluster; the code path is the same.

Scores are integer dot products, exact while below 2^24 where float32 stops holding every integer
(at the default scale 25 impacts stay under 100: a 48-term score under 500,000). Milvus does not
order tied scores; lexret asks for more hits while the last one ties the ``k``-th and ranks ties by
document id, as its other backends do.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from lexret.errors import IndexMismatchError, LexretError
from lexret.index_meta import QuerySpec, check_compatible
from lexret.quantize import Quantizer
from lexret.trec import Run
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)

FORMAT = "lexret-milvus/1"
ID_FIELD = "id"
VECTOR_FIELD = "vector"
ID_MAX_LENGTH = 1024
MAX_LIMIT = 16_384  # Milvus's largest top-k
INSERT_BATCH = 5_000
LOOKUP_BATCH = 1_000  # ids per "id in [...]" query
TOKEN_ENV = "LEXRET_MILVUS_TOKEN"
CONNECT_TIMEOUT_S = 20.0
SEARCH_PARAMS = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}  # exact: nothing dropped


class MilvusError(LexretError):
    """Milvus cannot be reached, or refused an operation."""


def _client(uri: str, timeout_s: float = CONNECT_TIMEOUT_S):
    with warnings.catch_warnings():  # milvus-lite 2.5 imports pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise MilvusError(
                "the Milvus backend needs pymilvus: `pip install 'pymilvus==2.5.18' 'milvus-lite==2.5.1'` "
                "(make setup installs them)"
            ) from None
        try:
            return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""), timeout=timeout_s)
        except Exception as e:  # pymilvus raises MilvusException, ConnectionError, grpc errors ...
            raise MilvusError(f"cannot connect to Milvus at {uri} ({_first_line(e)}); check --uri") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _rows(batch: SparseBatch) -> list[dict[int, float]]:
    return [{int(t): float(v) for t, v in zip(*(x.tolist() for x in batch.row(i)))} for i in range(len(batch))]


def _describe(meta: dict[str, Any]) -> str:
    return json.dumps({"lexret": meta}, separators=(",", ":"))


class MilvusCollection:
    """One lexret collection in Milvus: create, load (resumably), describe, search."""

    def __init__(self, uri: str, name: str) -> None:
        self.uri, self.name = uri, name
        self.client = _client(uri)

    def where(self) -> str:
        return f"Milvus collection {self.name!r} at {self.uri}"

    def exists(self) -> bool:
        return bool(self.client.has_collection(self.name))

    def meta(self) -> dict[str, Any]:
        """lexret's metadata of the collection (from its description)."""
        if not self.exists():
            raise MilvusError(
                f"{self.where()} does not exist; create it with "
                f"`lexret milvus load --vectors DOCS --uri {self.uri} --collection {self.name}`"
            )
        desc = self.client.describe_collection(self.name).get("description", "")
        try:
            meta = json.loads(desc)["lexret"]
            meta["quantization"]["scale"]  # noqa: B018  (must be present)
        except (ValueError, KeyError, TypeError):
            raise MilvusError(f"{self.where()} was not created by lexret (no lexret metadata)") from None
        if meta.get("format") != FORMAT:
            raise MilvusError(f"{self.where()} has format {meta.get('format')!r}, this lexret reads {FORMAT!r}")
        return meta

    def create(self, meta: dict[str, Any]) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description=_describe({**meta, "format": FORMAT})
        )
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
        schema.add_field(VECTOR_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name=VECTOR_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="IP",
            params={"drop_ratio_build": 0.0},
        )  # fmt: skip
        self.client.create_collection(self.name, schema=schema, index_params=index)

    def drop(self) -> None:
        if self.exists():
            self.client.drop_collection(self.name)

    def stored(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` already in the collection (a resumed load skips them)."""
        out: set[str] = set()
        for a in range(0, len(ids), LOOKUP_BATCH):
            expr = f"{ID_FIELD} in {json.dumps(list(ids[a : a + LOOKUP_BATCH]))}"
            out.update(r[ID_FIELD] for r in self.client.query(self.name, filter=expr, output_fields=[ID_FIELD]))
        return out

    def insert(self, chunks: Iterable[tuple[list[str], SparseBatch]], *, total: int | None = None) -> int:
        """Insert quantized ``(ids, batch)`` chunks; returns the number of entities inserted."""
        n = 0
        with tqdm(total=total, desc=f"load {self.name}", unit="doc", disable=None) as bar:
            for ids, batch in chunks:
                for a in range(0, len(ids), INSERT_BATCH):
                    rows = _rows(batch.slice(a, a + INSERT_BATCH))
                    data = [{ID_FIELD: i, VECTOR_FIELD: r} for i, r in zip(ids[a : a + INSERT_BATCH], rows)]
                    try:
                        self.client.insert(self.name, data)
                    except Exception as e:
                        raise MilvusError(
                            f"inserting into {self.where()} failed ({_first_line(e)}); rerun the same "
                            "`lexret milvus load` to continue (ids already stored are skipped)"
                        ) from None
                    n += len(data)
                    bar.update(len(data))
        self.client.flush(self.name)
        return n

    def count(self) -> int:
        return int(self.client.get_collection_stats(self.name)["row_count"])

    def search_one(self, query: dict[int, float], k: int) -> list[tuple[str, float]]:
        """Top ``k`` (score descending, id ascending) for one query of integer impacts."""
        if not query:
            return []
        limit = k
        while True:
            res = self.client.search(
                self.name, data=[query], anns_field=VECTOR_FIELD, limit=limit, search_params=SEARCH_PARAMS
            )[0]
            hits = [(h["id"], float(round(h["distance"]))) for h in res]
            hits = [h for h in hits if h[1] > 0]
            boundary_tie = len(res) == limit and len(hits) >= k and hits[-1][1] == hits[k - 1][1]
            if not boundary_tie or limit >= MAX_LIMIT:
                if boundary_tie:
                    log.warning("more than %d documents tie at one score; ties beyond them are not ranked", limit)
                break
            limit = min(MAX_LIMIT, limit * 4)
        return sorted(hits, key=lambda h: (-h[1], h[0]))[:k]


class MilvusSearcher:
    """:class:`~lexret.searcher.Searcher`'s search interface over a Milvus collection."""

    def __init__(self, uri: str, collection: str, vocab: Vocabulary, *, expect: QuerySpec | None = None) -> None:
        self.coll = MilvusCollection(uri, collection)
        self.meta = self.coll.meta()
        self.coll.client.load_collection(collection)
        spec = expect or QuerySpec()
        spec = QuerySpec(spec.model_id, spec.vocab_hash or vocab.hash, spec.scale)
        check_compatible(
            self.meta, spec, self.coll.where(),
            rebuild=f"`lexret milvus load --vectors DOCS --uri {uri} --collection NAME --scale S`",
        )  # fmt: skip
        q = self.meta["quantization"]
        self.quantizer = Quantizer(q["scale"], q["max_impact"])
        self.queries_quantized = spec.scale is not None
        self.vocab = vocab

    def prepare(self, queries: SparseBatch) -> SparseBatch:
        if queries.dim != len(self.vocab):
            raise LexretError(f"queries have dim {queries.dim}, the vocabulary {len(self.vocab)} terms")
        if self.queries_quantized:
            if not queries.is_integer:
                raise LexretError("queries were declared quantized (--scale) but hold non-integer weights")
            return queries.threshold(0)
        return self.quantizer(queries)

    def search(self, qids: Sequence[str], queries: SparseBatch, k: int = 10, **kw: Any) -> Run:
        run: Run = {}
        for chunk in self.iter_search(qids, queries, k, **kw):
            run.update(chunk)
        return run

    def iter_search(
        self, qids: Sequence[str], queries: SparseBatch, k: int = 10, *, chunk_size: int = 1000,
        progress: bool = True, **_: Any,
    ) -> Iterator[Run]:  # fmt: skip
        if len(qids) != len(queries):
            raise LexretError(f"{len(qids)} query ids for {len(queries)} query vectors")
        if k < 1 or k > MAX_LIMIT:
            raise LexretError(f"k must be between 1 and {MAX_LIMIT} (Milvus's largest top-k)")
        if len(set(qids)) != len(qids):
            raise LexretError("query ids must be unique")
        q = self.prepare(queries)
        rows = _rows(q)
        with tqdm(total=len(qids), desc="search (milvus)", unit="q", disable=None if progress else True) as bar:
            for a in range(0, len(qids), chunk_size):
                yield {qids[i]: self.coll.search_one(rows[i], k) for i in range(a, min(a + chunk_size, len(qids)))}
                bar.update(min(chunk_size, len(qids) - a))

    def close(self) -> None:
        self.coll.client.close()

    def __enter__(self) -> MilvusSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_same_documents(meta: dict[str, Any], new: dict[str, Any], where: str) -> None:
    """A resumed load must add vectors of the same model, vocabulary and quantization."""
    keys = ("model_id", "vocab_hash", "quantization")
    diff = [k for k in keys if meta.get(k) != new.get(k)]
    if diff:
        what = "; ".join(f"{k} {meta.get(k)!r} there, {new.get(k)!r} now" for k in diff)
        raise IndexMismatchError(
            f"{where} holds other vectors ({what}); load into another --collection, or pass --replace to drop it"
        )
