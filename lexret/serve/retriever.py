"""One encoder and one searcher per index, loaded once and shared by every request.

Thread safety (measured, docs/serve.md): requests run on several worker threads, but the encoder
and each searcher are used by one thread at a time, each under its own lock. The fast tokenizer
refuses concurrent use, and torch already spreads one encoding over all cores. pyjnius binds a Java
method to its object on a shared method wrapper, so two threads calling methods of the same Java
class at once can act on each other's objects: unlocked concurrent Lucene searches failed with
``IndexOutOfBoundsException`` or returned another query's hits. Worker threads are attached to the
JVM by pyjnius on their first call.

Each hit carries its matched terms: for every term the query and the document share, the query's
integer weight times the document's impact, largest first. Their sum is the hit's score, exactly,
since Lucene's impact score is that sum; the document impacts come from the vectors stored beside
the index (``docvectors.npz``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from lexret.errors import IndexMismatchError, InputError, LexretError
from lexret.serve.config import MAX_K, MAX_QUERY_CHARS, ServeConfig
from lexret.types import SparseBatch

log = logging.getLogger(__name__)

TARGETS = ("images", "captions")
IMAGE_ROUTE = "/images/"
WARM_UP_TEXT = "a dog runs on the beach"


class RequestError(LexretError):
    """A request the server cannot answer: ``status`` is its HTTP status (4xx or 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class IndexView:
    """One served index: its searcher, its ids and stored vectors, or why it cannot be searched."""

    name: str
    path: Path
    searcher: Any = None  # lexret.searcher.Searcher
    mismatch: str | None = None  # the index was built by another model than the encoder
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    docs: SparseBatch | None = None  # quantized document vectors, for contributions and explain
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # caption id -> {"text", "image"?}

    @property
    def meta(self) -> dict[str, Any]:
        return self.searcher.meta if self.searcher is not None else {}

    @property
    def prior_term(self) -> int | None:
        """The reserved term that holds each document's caption prior (lexret.document_prior), if the
        index has one: shown apart from the matched words, as ``prior``."""
        from lexret.document_prior import META_KEY

        prior = self.meta.get(META_KEY)
        return None if prior is None else int(prior["term_id"])


def _open_index(name: str, path: Path, encoder, heap: str | None) -> IndexView:
    from lexret.index_meta import QuerySpec
    from lexret.searcher import Searcher

    view = IndexView(name, path)
    spec = QuerySpec(model_id=encoder.index_model_id, vocab_hash=encoder.vocab.hash)
    try:
        view.searcher = Searcher(path, encoder.vocab, expect=spec, heap=heap)
    except IndexMismatchError as e:
        view.mismatch = str(e)
        log.error("%s index: %s", name, e)
        return view
    if view.searcher.meta.get("has_docvectors", True) and (path / "docvectors.npz").is_file():
        view.ids, view.docs = view.searcher.load_docvectors()
    else:
        view.ids = view.searcher.load_docids()
        log.warning("%s keeps no document vectors: hits will come without their matched terms", path)
    view.rows = {d: i for i, d in enumerate(view.ids)}
    return view


def read_caption_texts(path: Path) -> dict[str, dict[str, str]]:
    """``{"id", "text", "image"?}`` lines -> id -> {"text", "image"?}."""
    out: dict[str, dict[str, str]] = {}
    if not path.is_file():
        raise InputError("captions texts file not found", path=str(path))
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON ({e.msg})", path=str(path), line=n) from None
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("text"), str):
                raise InputError('each line must be {"id": ..., "text": ..., "image"?: ...}', path=str(path), line=n)
            out[obj["id"]] = {k: obj[k] for k in ("text", "image") if isinstance(obj.get(k), str)}
    return out


class Retriever:
    """Text or image in, ranked hits with their matched terms out; safe to share between threads."""

    def __init__(self, config: ServeConfig, encoder, images: IndexView, captions: IndexView | None,
                 image_root: Path | None) -> None:  # fmt: skip
        self.config = config
        self.encoder = encoder
        self.views = {"images": images, **({"captions": captions} if captions else {})}
        self.image_root = image_root.resolve() if image_root else None
        self._encode_lock = threading.Lock()
        self._search_lock = threading.Lock()  # pyjnius calls are not thread-safe (module docstring)

    @classmethod
    def load(cls, config: ServeConfig) -> Retriever:
        """Load the encoder and open the indexes (building the sample's on first start)."""
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from lexret.encoders import SparseEncoder
        from lexret.index_meta import read_meta

        for path in (config.index, config.captions_index):  # a wrong path is reported before the model loads
            if path is not None:
                read_meta(path)
        if config.captions_texts is not None and not config.captions_texts.is_file():
            raise InputError("captions texts file not found", path=str(config.captions_texts))
        encoder = SparseEncoder.from_pretrained(config.model)
        index, captions, texts, root = config.index, config.captions_index, config.captions_texts, config.images
        if index is None:
            from lexret.serve.sample import ensure_sample_indexes

            sample = ensure_sample_indexes(encoder, config.cache_dir, config.heap)
            index, root = sample.images, root or sample.root
            if captions is None:
                captions, texts = sample.captions, texts or sample.texts
        if root is not None and not root.is_dir():
            raise LexretError(f"--images {root} is not a folder; pass the folder the image ids are relative to")
        images_view = _open_index("images", index, encoder, config.heap)
        captions_view = _open_index("captions", captions, encoder, config.heap) if captions else None
        if captions_view is not None and texts is not None:
            captions_view.texts = read_caption_texts(texts)
        retriever = cls(config, encoder, images_view, captions_view, root)
        retriever.warm_up()
        return retriever

    def warm_up(self) -> None:
        """Load the lazily loaded backbones and run one search per index, so that the first request
        is not the one that pays for them (nor the one that hits the time limit)."""
        t0 = time.perf_counter()
        with self._encode_lock:
            text = self.encoder.encode_texts([WARM_UP_TEXT])
            size = self.encoder.image_size
            image = self.encoder.encode_pixels(np.zeros((1, 3, size, size), np.float32))
        for view in self.views.values():
            if view.mismatch is None:
                for query in (text, image):
                    with self._search_lock:
                        view.searcher.search(["warm-up"], query, 1, progress=False)
        log.info("warmed up in %.1f s", time.perf_counter() - t0)

    def close(self) -> None:
        for view in self.views.values():
            if view.searcher is not None:
                view.searcher.close()

    # ----- requests -----------------------------------------------------------------------------

    def search_text(self, text: str, k: int, target: str = "images") -> dict[str, Any]:
        view = self.view(target)
        t0 = time.perf_counter()
        with self._encode_lock:
            query = self.encoder.encode_texts([text])
        return self._search(view, query, k, time.perf_counter() - t0)

    def search_image(self, image_file: Path, k: int, target: str = "images") -> dict[str, Any]:
        """Search with the image in ``image_file`` (decoded by :func:`lexret.data.load_image`, whose
        :class:`InputError` names a file that is not an image)."""
        from lexret.data import load_image, preprocess_image

        view = self.view(target)
        t0 = time.perf_counter()
        img = load_image(image_file, size=self.encoder.image_size)
        pixels = preprocess_image(img, self.encoder.image_size)[None]
        with self._encode_lock:
            query = self.encoder.encode_pixels(pixels)
        return self._search(view, query, k, time.perf_counter() - t0)

    def explain(self, docid: str, target: str = "images", top: int = 30) -> dict[str, Any]:
        view = self.view(target)
        row = view.rows.get(docid)
        if row is None:
            raise RequestError(404, f"unknown id {docid!r}: the {target} index holds no such document")
        out: dict[str, Any] = {"id": docid, "target": target, **self._describe(view, docid)}
        if view.docs is None:
            raise RequestError(409, f"{view.path} keeps no document vectors; rebuild it without --no-store-vectors")
        idx, val = view.docs.row(row)
        if view.prior_term is not None:  # the caption prior is no word of the caption: reported apart
            is_prior = idx == view.prior_term
            out["prior"] = int(val[is_prior].sum())
            idx, val = idx[~is_prior], val[~is_prior]
        order = np.lexsort((idx, -val))  # heaviest first, ties by term number
        toks = self.encoder.vocab.tokens
        out["n_terms"] = int(idx.size)
        out["terms"] = [{"term": toks[int(idx[j])], "impact": int(val[j])} for j in order[:top]]
        return out

    def health(self) -> dict[str, Any]:
        keep = ("model_id", "modality", "num_docs", "num_postings", "avg_doc_terms", "quantization", "built_at",
                "index_bytes", "format", "query_prior")  # fmt: skip
        indexes = {}
        for name, view in self.views.items():
            indexes[name] = {
                "path": str(view.path),
                "ready": view.mismatch is None,
                **({"error": view.mismatch} if view.mismatch else {}),
                **{k: view.meta[k] for k in keep if k in view.meta},
                "matched_terms": view.docs is not None,
            }
        images = self.views["images"]
        return {
            "status": "ok" if all(v.mismatch is None for v in self.views.values()) else "index-mismatch",
            "model_id": self.encoder.model_id,
            "vocab_hash": self.encoder.vocab.hash,
            "num_docs": images.meta.get("num_docs", 0),
            "images_served": self.image_root is not None,
            "indexes": indexes,
            "limits": {
                "max_k": MAX_K,
                "max_query_chars": MAX_QUERY_CHARS,
                "max_upload_bytes": self.config.max_upload_bytes,
                "timeout_s": self.config.timeout_s,
            },
        }

    # ----- helpers ------------------------------------------------------------------------------

    def view(self, target: str) -> IndexView:
        if target not in TARGETS:
            raise RequestError(400, f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
        view = self.views.get(target)
        if view is None:
            raise RequestError(404, "no caption index is served; start the server with --captions-index INDEX")
        if view.mismatch:
            raise RequestError(409, view.mismatch)
        return view

    def _search(self, view: IndexView, query: SparseBatch, k: int, encode_s: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        with self._search_lock:
            hits = view.searcher.search(["q"], query, k, progress=False)["q"]
        search_s = time.perf_counter() - t0
        q = view.searcher.prepare(query)  # the integer weights Lucene scored with
        q_idx, q_val = q.row(0)
        query_info: dict[str, Any] = {}
        if view.prior_term is not None:  # a caption index's prior term: its part of a score is the hit's prior
            is_prior = q_idx == view.prior_term
            query_info["prior_weight"] = int(q_val[is_prior].sum())
            q_idx, q_val = q_idx[~is_prior], q_val[~is_prior]
        toks = self.encoder.vocab.tokens
        order = np.lexsort((q_idx, -q_val))
        out_hits = []
        for rank, (docid, score) in enumerate(hits, start=1):
            hit = {"id": docid, "rank": rank, "score": score, **self._describe(view, docid)}
            hit["terms"] = self._contributions(view, docid, q_idx, q_val)
            if view.prior_term is not None and view.docs is not None:  # score = the terms' contributions + prior
                d_idx, d_val = view.docs.row(view.rows[docid])
                hit["prior"] = query_info["prior_weight"] * int(d_val[d_idx == view.prior_term].sum())
            out_hits.append(hit)
        return {
            "query": {"terms": {toks[int(q_idx[j])]: int(q_val[j]) for j in order}, **query_info},
            "target": view.name,
            "hits": out_hits,
            "encode_ms": round(encode_s * 1000, 2),
            "search_ms": round(search_s * 1000, 2),
        }

    def _contributions(self, view: IndexView, docid: str, q_idx: np.ndarray, q_val: np.ndarray) -> list[dict]:
        """Shared terms with ``query weight x document impact``, largest first (ties by term)."""
        if view.docs is None:
            return []
        d_idx, d_val = view.docs.row(view.rows[docid])
        common, qi, di = np.intersect1d(q_idx, d_idx, assume_unique=True, return_indices=True)
        contrib = q_val[qi].astype(np.int64) * d_val[di].astype(np.int64)
        order = np.lexsort((common, -contrib))
        toks = self.encoder.vocab.tokens
        return [{"term": toks[int(common[j])], "contribution": int(contrib[j])} for j in order]

    def _describe(self, view: IndexView, docid: str) -> dict[str, Any]:
        """What the page shows for a document: its image URL, or a caption's text (and image)."""
        if view.name == "images":
            return {"image_url": self.image_url(docid)}
        info = view.texts.get(docid, {})
        image = info.get("image")
        return {"text": info.get("text"), "image_url": self.image_url(image) if image else None}

    def image_url(self, docid: str) -> str | None:
        return IMAGE_ROUTE + quote(docid) if self.image_root is not None else None

    def image_file(self, rel: str) -> Path:
        """The file under ``--images`` ROOT that ``rel`` names; a path outside ROOT is refused."""
        from lexret.data import IMAGE_SUFFIXES

        if self.image_root is None:
            raise RequestError(404, "no image folder is served; start the server with --images ROOT")
        path = (self.image_root / rel).resolve()
        if not path.is_relative_to(self.image_root):
            raise RequestError(403, f"{rel!r} lies outside the image folder; only files under it are served")
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            raise RequestError(404, f"no image {rel!r} in the image folder")
        return path
