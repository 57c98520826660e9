"""Build an impact index (Lucene's, or Seismic's approximate one) from sparse vectors.

Sparse batches are quantized, written as JsonVectorCollection shards (one file per indexing
thread at least), indexed by pyserini with ``--impact --pretokenized``, and described by
``lexret.json``. With ``engine="seismic"`` the same quantized vectors are indexed by Seismic
(:mod:`lexret.backends.seismic`) instead, with the same metadata, ``docids.txt`` and stored vectors.
Everything happens in a temporary folder beside the target, renamed into place at
the end: an interrupted build leaves no index under the final name, and a rebuild of an existing
name replaces the old index only once the new one is complete.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lexret import __version__
from lexret.backends.seismic import SeismicBuildParams
from lexret.errors import InputError, LexretError
from lexret.index_meta import DEFAULT_ENGINE, ENGINES, FORMAT, META_FILE, UNKNOWN_MODEL, lucene_files, write_meta
from lexret.lucene_ids import COLLECTION_SCHEME, SCHEME, encode, string_ranks, width_for
from lexret.quantize import DEFAULT_MAX_IMPACT, DEFAULT_SCALE, Quantizer
from lexret.reorder import REORDER_METHODS, reorder
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class IndexConfig:
    """How to build an impact index."""

    scale: float = DEFAULT_SCALE
    max_impact: int = DEFAULT_MAX_IMPACT
    threads: int = 2
    optimize: bool = False  # force-merge into one segment
    heap: str | None = None  # JVM -Xmx for the indexing process
    store_vectors: bool = True  # keep quantized vectors (docvectors.npz) for exact brute-force search
    keep_collection: bool = False  # keep the JsonVectorCollection files (debugging)
    # Document order: "none" keeps the input order; "bp" clusters documents that share terms
    # (lexret.reorder) within windows of reorder_window documents. Measured on Flickr8k images it
    # does not pay for itself with Lucene's codec (docs/compare.md), so it is not the default.
    reorder: str = "none"
    reorder_window: int = 2**17
    # "lucene" (exact impact search through Pyserini) or "seismic" (approximate, lexret.backends.seismic)
    engine: str = DEFAULT_ENGINE
    seismic: SeismicBuildParams = field(default_factory=SeismicBuildParams)  # used by engine="seismic" only
    # Lucene holds the collection's own ids (stock Anserini returns them) unless short_ids: then the
    # base-62 rank of each id (lexret.lucene_ids), smaller, but only lexret can map hits back
    short_ids: bool = False

    def __post_init__(self) -> None:
        if self.reorder not in REORDER_METHODS:
            raise LexretError(f"unknown reorder method {self.reorder!r}; use one of {', '.join(REORDER_METHODS)}")
        if self.engine not in ENGINES:
            raise LexretError(f"unknown index engine {self.engine!r}; use one of {', '.join(ENGINES)}")
        if self.engine == "seismic" and self.reorder != "none":
            raise LexretError("--reorder orders Lucene's documents; Seismic clusters its own: drop --reorder")
        if self.reorder_window < 1:
            raise LexretError("reorder_window must be at least 1")


@dataclass
class IndexInfo:
    """What describes the documents: written to ``lexret.json``."""

    model_id: str = UNKNOWN_MODEL
    modality: str = "unknown"
    source: str | None = None


def _impact_line(docid: str, idx: np.ndarray, val: np.ndarray, toks: list[str]) -> str:
    vec = {toks[j]: int(v) for j, v in zip(idx.tolist(), val.tolist())}
    return json.dumps({"id": docid, "contents": "", "vector": vec}, ensure_ascii=False) + "\n"


class Indexer:
    """Turns ``(ids, SparseBatch)`` chunks into a self-describing Lucene impact index folder."""

    def __init__(self, vocab: Vocabulary, config: IndexConfig | None = None) -> None:
        self.vocab = vocab
        self.config = config or IndexConfig()
        self.quantizer = Quantizer(self.config.scale, self.config.max_impact)

    def build(
        self,
        chunks: Iterable[tuple[list[str], SparseBatch]],
        out_dir: str | Path,
        info: IndexInfo | None = None,
        *,
        total: int | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build the index at ``out_dir`` and return its metadata."""
        from lexret.backends.lucene import build_lucene_index

        info = info or IndexInfo()
        cfg = self.config
        out = Path(out_dir)
        if out.exists() and not (out.is_dir() and ((out / META_FILE).exists() or not any(out.iterdir()))):
            raise LexretError(f"{out} exists and is not a lexret index; choose another --out or remove it")
        out.parent.mkdir(parents=True, exist_ok=True)
        work = out.parent / f".{out.name}.building-{uuid.uuid4().hex[:8]}"
        if cfg.engine == "seismic":
            return self._build_seismic(chunks, out, work, info, total, extra_meta)
        coll = work / "collection"
        idx_dir = work / "index"
        coll.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            stats = self._write_collection(chunks, coll, total)
            n, empty, docids = stats["n"], stats["empty"], stats["docids"]
            if n == 0:
                raise InputError("no documents to index", path=info.source)
            if cfg.short_ids:
                width = width_for(n)
                _write_short_ids(coll, string_ranks(docids), width)
                lucene_ids: dict[str, Any] = {"scheme": SCHEME, "width": width}
            else:
                lucene_ids = {"scheme": COLLECTION_SCHEME}
            _warn_empty(empty)
            t_write = time.perf_counter() - t0
            log.info("indexing %d documents with Lucene (%d threads)...", n, cfg.threads)
            build_lucene_index(
                coll,
                idx_dir,
                threads=cfg.threads,
                optimize=cfg.optimize,
                heap=cfg.heap,
                log_file=work / "build.log",
            )
            (idx_dir / "write.lock").unlink(missing_ok=True)
            files = lucene_files(idx_dir)
            (idx_dir / "docids.txt").write_text("\n".join(docids) + "\n", encoding="utf-8")
            if cfg.store_vectors:
                allq = SparseBatch.concat(stats["parts"])
                save_docvectors(idx_dir / "docvectors.npz", allq)
            meta = self._meta(info, stats, cfg, t0, t_write, files, extra_meta)
            # the ids Lucene holds: the collection's own or base-62 ranks (lexret.lucene_ids)
            meta.update({"backend": "lucene-impact", "lucene_ids": lucene_ids})
            write_meta(idx_dir, meta)
            shutil.move(str(work / "build.log"), idx_dir / "build.log")
            if cfg.keep_collection:
                shutil.move(str(coll), out.parent / f"{out.name}.collection")
            _swap_into_place(idx_dir, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info(
            "index %s: %d docs, %.1f terms/doc, %.1f MB, %.1fs",
            out,
            n,
            meta["avg_doc_terms"],
            meta["index_bytes"] / 1e6,
            meta["build_seconds"],
        )
        return meta

    def _write_collection(
        self, chunks: Iterable[tuple[list[str], SparseBatch]], coll: Path, total: int | None
    ) -> dict[str, Any]:
        """Quantize and write JsonVectorCollection shards, one per indexing thread."""
        n_shards = max(1, self.config.threads)
        seen: set[str] = set()
        empty: list[str] = []
        docids: list[str] = []
        parts: list[SparseBatch] = []
        n = nnz = impact_sum = 0
        toks = self.vocab.tokens
        with ExitStack() as stack:
            shards = [
                stack.enter_context(open(coll / f"docs-{i:03d}.jsonl", "w", encoding="utf-8")) for i in range(n_shards)
            ]
            bar = stack.enter_context(tqdm(total=total, desc="write collection", unit="doc", disable=None))
            for ids, batch, order in self._windows(chunks):
                q = self.quantizer(batch)
                _note_ids(ids, q, seen, empty)
                # Lucene numbers documents in the order they are written; docids.txt and the stored
                # vectors keep the input order
                for i in order.tolist():
                    r_idx, r_val = q.row(i)
                    # with short ids, the row number stands in for the short id until all ids are known
                    lucene_id = str(len(docids) + i) if self.config.short_ids else ids[i]
                    shards[n % n_shards].write(_impact_line(lucene_id, r_idx, r_val, toks))
                    n += 1
                nnz += q.nnz
                impact_sum += int(q.values.sum(dtype=np.int64))
                docids.extend(ids)
                if self.config.store_vectors:
                    parts.append(q)
                bar.update(len(ids))
        return {"n": n, "nnz": nnz, "impact_sum": impact_sum, "empty": empty, "docids": docids, "parts": parts}

    def _build_seismic(
        self,
        chunks: Iterable[tuple[list[str], SparseBatch]],
        out: Path,
        work: Path,
        info: IndexInfo,
        total: int | None,
        extra_meta: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Seismic's index of the quantized vectors, built in ``work`` and swapped into ``out``."""
        from lexret.backends.seismic import INDEX_FILE, build_seismic_index

        cfg = self.config
        t0 = time.perf_counter()
        idx_dir = work / "index"
        idx_dir.mkdir(parents=True)
        try:
            stats = self._quantize_all(chunks, total)
            docs, docids, empty = stats["docs"], stats["docids"], stats["empty"]
            if len(docids) == 0:
                raise InputError("no documents to index", path=info.source)
            _warn_empty(empty)
            t_write = time.perf_counter() - t0
            log.info("indexing %d documents with Seismic (%d threads)...", len(docids), cfg.threads)
            build_seismic_index(docs, idx_dir / INDEX_FILE, cfg.seismic, threads=cfg.threads)
            files = lucene_files(idx_dir)  # the engine's files: everything but lexret's own
            (idx_dir / "docids.txt").write_text("\n".join(docids) + "\n", encoding="utf-8")
            if cfg.store_vectors:
                save_docvectors(idx_dir / "docvectors.npz", docs)
            meta = self._meta(info, stats, cfg, t0, t_write, files, extra_meta)
            meta.update({"backend": "seismic", "engine": "seismic", "seismic": asdict(cfg.seismic)})
            write_meta(idx_dir, meta)
            _swap_into_place(idx_dir, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("index %s (seismic): %d docs, %.1f MB, %.1fs", out, meta["num_docs"], meta["index_bytes"] / 1e6,
                 meta["build_seconds"])  # fmt: skip
        return meta

    def _meta(self, info: IndexInfo, stats: dict[str, Any], cfg: IndexConfig, t0: float, t_write: float,
              files: dict[str, int], extra_meta: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
        n = len(stats["docids"])
        return {
            "format": FORMAT,
            "lexret_version": __version__,
            "model_id": info.model_id,
            "modality": info.modality,
            "source": info.source,
            "vocab_hash": self.vocab.hash,
            "vocab_size": len(self.vocab),
            "quantization": self.quantizer.to_dict(),
            "num_docs": n,
            "num_postings": stats["nnz"],
            "impact_sum": stats["impact_sum"],
            "avg_doc_terms": stats["nnz"] / n,
            "empty_docs": stats["empty"],
            "build_seconds": round(time.perf_counter() - t0, 3),
            "write_seconds": round(t_write, 3),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": asdict(cfg),
            "files": files,
            "index_bytes": sum(files.values()),
            "has_docvectors": cfg.store_vectors,
            **(extra_meta or {}),
        }

    def _quantize_all(self, chunks: Iterable[tuple[list[str], SparseBatch]], total: int | None) -> dict[str, Any]:
        """Every document quantized, in input order, with the same checks as the Lucene build."""
        seen: set[str] = set()
        empty: list[str] = []
        docids: list[str] = []
        parts: list[SparseBatch] = []
        with tqdm(total=total, desc="quantize", unit="doc", disable=None) as bar:
            for ids, batch, _ in self._windows(chunks):
                q = self.quantizer(batch)
                _note_ids(ids, q, seen, empty)
                docids.extend(ids)
                parts.append(q)
                bar.update(len(ids))
        docs = SparseBatch.concat(parts) if parts else SparseBatch.empty(0, len(self.vocab), np.int32)
        return {
            "docs": docs,
            "docids": docids,
            "empty": empty,
            "nnz": docs.nnz,
            "impact_sum": int(docs.values.sum(dtype=np.int64)),
        }

    def _windows(
        self, chunks: Iterable[tuple[list[str], SparseBatch]]
    ) -> Iterator[tuple[list[str], SparseBatch, np.ndarray]]:
        """``(ids, batch, order)``: the input in windows of ``reorder_window`` documents (or as
        given, with ``reorder="none"``) and the order in which to write each window's rows."""
        cfg = self.config

        def checked() -> Iterator[tuple[list[str], SparseBatch]]:
            for ids, batch in chunks:
                if batch.dim != len(self.vocab):
                    raise InputError(f"vectors have dim {batch.dim}, the vocabulary {len(self.vocab)} terms")
                if len(ids) != len(batch):
                    raise InputError(f"{len(ids)} document ids for {len(batch)} vectors")
                yield ids, batch

        if cfg.reorder == "none":
            for ids, batch in checked():
                yield ids, batch, np.arange(len(ids))
            return
        buf_ids: list[str] = []
        buf: list[SparseBatch] = []
        size = 0

        def flush() -> tuple[list[str], SparseBatch, np.ndarray]:
            batch = SparseBatch.concat(buf)
            t = time.perf_counter()
            order = reorder(batch, cfg.reorder)
            log.info("reordered %d documents (%s) in %.1fs", len(batch), cfg.reorder, time.perf_counter() - t)
            return buf_ids, batch, order

        for ids, batch in checked():
            a = 0
            while a < len(ids):
                b = min(len(ids), a + cfg.reorder_window - size)
                buf_ids.extend(ids[a:b])
                buf.append(batch.slice(a, b))
                size += b - a
                a = b
                if size >= cfg.reorder_window:
                    yield flush()
                    buf_ids, buf, size = [], [], 0
        if size:
            yield flush()


def _note_ids(ids: list[str], q: SparseBatch, seen: set[str], empty: list[str]) -> None:
    """Refuse an id seen before; add the ids of rows with no positive impact to ``empty``."""
    for i, docid in enumerate(ids):
        if docid in seen:
            raise InputError(f"document id {docid!r} occurs twice; ids must be unique")
        seen.add(docid)
        if q.indptr[i] == q.indptr[i + 1]:
            empty.append(docid)


def _warn_empty(empty: list[str]) -> None:
    if empty:
        log.warning(
            "%d document(s) have no positive term weight and cannot be matched by any query "
            "(listed under empty_docs in %s): %s",
            len(empty),
            META_FILE,
            ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else ""),
        )


def _write_short_ids(coll: Path, ranks: np.ndarray, width: int) -> None:
    """Replace the row number that stands as each line's id by the row's short id, file by file."""
    prefix = '{"id": "'
    for shard in sorted(coll.glob("docs-*.jsonl")):
        tmp = shard.with_suffix(".tmp")
        with open(shard, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
            for line in src:
                end = line.index('"', len(prefix))
                short = encode(int(ranks[int(line[len(prefix) : end])]), width)
                dst.write(prefix + short + line[end:])
        os.replace(tmp, shard)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def _narrowest(values: np.ndarray, kinds: tuple[type, ...]) -> np.ndarray:
    if values.dtype.kind not in "iu":
        return values
    top = int(values.max()) if values.size else 0
    low = int(values.min()) if values.size else 0
    for dt in kinds:
        if np.iinfo(dt).min <= low and top <= np.iinfo(dt).max:
            return values.astype(dt)
    return values


def save_docvectors(path: Path, docs: SparseBatch) -> None:
    """The quantized vectors as ``docvectors.npz`` (CSR), term ids and impacts in the narrowest integer
    types that hold them (at 1M images, 48 terms, impacts <= 255: 152 instead of 392 MB). Readers get
    int32 back through :class:`SparseBatch`."""
    np.savez(
        path, indptr=docs.indptr, indices=_narrowest(docs.indices, (np.uint16, np.int32)),
        values=_narrowest(docs.values, (np.uint8, np.uint16, np.int32)),
    )  # fmt: skip


def _swap_into_place(new: Path, out: Path) -> None:
    """Move the finished index to ``out``; an old index there is replaced only now, in one atomic
    exchange where the OS allows it, so a search opening ``out`` always finds a complete index."""
    if not out.exists():
        os.replace(new, out)
        return
    if _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old index
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
