"""Encoders from raw images and text to vectors, with the shipped checkpoints loaded by default.

>>> enc = SparseEncoder.from_pretrained()          # lexret/checkpoints/sparse
>>> docs = enc.encode_images(["a.jpg", "b.jpg"])   # SparseBatch, top-48 terms per image (the shipped model)
>>> qs = enc.encode_texts(["a dog on the beach"])  # SparseBatch, top-32 terms per text
>>> enc.decode(qs, top=5)

The backbones (the EfficientNet-Lite the checkpoint names in ``image_backbone``: Lite0 for the
shipped models and for checkpoints that name none; all-MiniLM-L6-v2) are frozen and loaded lazily;
their outputs are rounded to float16 exactly as the training-time feature cache stores them, so
encoding raw inputs gives the vectors the heads were trained and selected on. No pyserini/faiss
import here.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lexret.errors import LexretError
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary, default_vocabulary

log = logging.getLogger(__name__)

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def shipped_checkpoint(kind: str) -> Path:
    p = CHECKPOINTS / kind
    if not (p / "config.json").is_file():
        raise LexretError(f"the shipped {kind} checkpoint is missing from {p}; pass --model PATH")
    return p


THREADS_ENV = "LEXRET_THREADS"


def encoder_threads() -> int:
    """Torch threads for encoding: ``$LEXRET_THREADS`` (0 or unset: one per CPU core)."""
    raw = os.environ.get(THREADS_ENV, "").strip() or "0"
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0 or n > 1024:
        raise LexretError(f"{THREADS_ENV}={raw!r} is not a thread count; set it to 1..1024, or 0 for all cores")
    return n or (os.cpu_count() or 1)


def _set_threads() -> None:
    import torch

    n = encoder_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _batches(n: int, bs: int, progress: bool, desc: str):
    from tqdm import tqdm

    starts = range(0, n, max(1, bs))
    return tqdm(starts, desc=desc, unit="batch", disable=not progress or n <= bs)


class _Base:
    kind = ""

    def __init__(self, path: Path) -> None:
        from lexret.model.checkpoint import load_model

        _set_threads()
        self.path = Path(path)
        self.model, self.config = load_model(self.path)
        self.model_id: str = self.config.get("model_id") or (self.path / "model_id").read_text().strip()
        if self.config["kind"] != self.kind:
            raise LexretError(f"{self.path} holds a {self.config['kind']} model, not a {self.kind} one")
        from lexret.model.backbones import image_backbone_spec

        spec = image_backbone_spec(self.config["image_backbone"])  # read_config: old checkpoints are Lite0
        self.image_backbone_id: str = spec.id
        self.image_size: int = spec.input_size  # pixels per side of the image backbone's input
        self._text = None
        self._image = None

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None):
        """Load a checkpoint folder (``None``: the one shipped with lexret)."""
        return cls(shipped_checkpoint(cls.kind) if path is None else Path(path))

    @property
    def text_backbone(self):
        if self._text is None:
            from lexret.model.backbones import TextBackbone

            self._text = TextBackbone()
        return self._text

    @property
    def image_backbone(self):
        if self._image is None:
            from lexret.model.backbones import ImageBackbone

            self._image = ImageBackbone(self.image_backbone_id)
        return self._image

    def _text_features(self, texts: Sequence[str]):
        import torch

        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise LexretError(f"text {i} is empty; every text needs at least one word")
        states, _, mask = self.text_backbone(list(texts))
        return states.to(torch.float16).float(), mask

    def _image_features(self, images: Sequence[Any]):
        import torch

        from lexret.model.backbones import pixels_from_images

        return self.image_backbone(pixels_from_images(list(images), self.image_size)).to(torch.float16).float()

    @property
    def index_model_id(self) -> str:
        """The model id that this encoder's vectors and indexes carry: its own, or for a query-map model
        the documents' model's, whose vectors its documents are (so that model's indexes take its queries),
        unless the map transforms the images (a DF cap or learned term scales): then its own."""
        spec = self.config.get("query_map")
        if not isinstance(spec, dict) or spec.get("df_cap") or spec.get("image_terms"):  # its own image vectors
            return self.model_id
        return str(spec["documents_model_id"])

    def metadata(self) -> dict[str, Any]:
        meta = {
            "model_id": self.index_model_id,
            "kind": self.kind,
            "image_backbone": self.image_backbone_id,
            "checkpoint": str(self.path),
        }
        if self.index_model_id != self.model_id:
            meta["encoder_model_id"] = self.model_id  # a query map over the documents of model_id
        return meta


class SparseEncoder(_Base):
    """Sparse lexical vectors over the 30,522 bert-base-uncased wordpieces."""

    kind = "sparse"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.vocab: Vocabulary = default_vocabulary()
        want = (self.path / "vocab_hash").read_text().strip() if (self.path / "vocab_hash").is_file() else None
        if want and want != self.vocab.hash:
            raise LexretError(f"{self.path} was trained with vocabulary {want}, this install has {self.vocab.hash}")
        self.top_k_query: int = int(self.config.get("top_k_text", 32))
        # caption documents may keep another number of terms than queries (a query-map model: its documents' model's)
        self.top_k_text_doc: int = int(self.config.get("top_k_text_documents", self.top_k_query))
        self.top_k_doc: int = int(self.config.get("top_k_image", 64))
        self._active = self.model.active.numpy()
        self._normalize = bool(self.config.get("normalize", False))
        self._scale = float(self.config.get("output_scale", 1.0))
        # inference-free queries (issue 17): a text is its own wordpieces through a query map, either a
        # learned per-term table (a model trained with one) or a learned expansion map over the
        # documents of another model (a folder written by ``lexret train-queries``)
        from lexret.model.checkpoint import documents_folder
        from lexret.model.query_map import QueryMap

        self.documents_path: Path = documents_folder(self.path, self.config)
        self._query_table: np.ndarray | None = None
        self.query_map: QueryMap | None = None
        if "query_map" in self.config:
            self.query_map = QueryMap.load(self.path)
            if self.query_map.dim != len(self.vocab):
                raise LexretError(
                    f"{self.path}: its query map has {self.query_map.dim} rows, the vocabulary {len(self.vocab)}"
                )
        elif getattr(self.model, "query_weights", None) is not None:
            import torch

            with torch.no_grad():
                table = np.zeros(len(self.vocab), dtype=np.float32)
                table[self._active] = self.model.query_table().float().numpy()
            self._query_table = table
            self.query_map = QueryMap.diagonal(table)
        self.inference_free: bool = self.query_map is not None
        # image-side transforms of a query-map model: a DF cap (lexret.model.df_cap: each term kept only
        # where it is among its heaviest) and learned per-term scales (lexret.model.term_scales)
        self.df_cap: np.ndarray | None = None
        self.term_scale: np.ndarray | None = None
        self.term_offset: np.ndarray | None = None
        spec = self.config.get("query_map")
        if isinstance(spec, dict) and spec.get("df_cap"):
            from lexret.model.df_cap import DfCap

            self.df_cap = DfCap.load(self.path).dense(len(self.vocab)) * self._scale
        if isinstance(spec, dict) and spec.get("image_terms"):
            from lexret.model.term_scales import TermScales

            a, b = TermScales.load(self.path).dense(len(self.vocab))
            self.term_scale, self.term_offset = a, b * self._scale
        # caption documents (an image->text index) through the text network, queries by the map
        self.encoded_documents: bool = self.inference_free and (
            "query_map" in self.config or bool(getattr(getattr(self.model, "cfg", None), "encoded_documents", False))
        )
        self._backend = None

    @property
    def tokenizer(self):
        """The wordpiece tokenizer (loaded without the text model)."""
        from lexret.model.backbones import text_tokenizer

        return text_tokenizer()

    def query_weights(self) -> np.ndarray:
        """``(vocab size,)`` weight of each wordpiece in an inference-free text vector (0: never used)."""
        if self._query_table is None:
            raise LexretError(f"{self.path} has no inference-free per-term weight table (see query_map)")
        return self._query_table

    @property
    def _wordpieces(self):
        """The tokenizer's Rust backend, truncating as the text backbone does (no padding): the
        inference-free path calls it directly, skipping the Python tokenizer wrapper."""
        if self._backend is None:
            from lexret.model.backbones import TEXT_MAX_LEN

            backend = copy.deepcopy(self.tokenizer.backend_tokenizer)
            backend.no_padding()
            backend.enable_truncation(TEXT_MAX_LEN)
            self._backend = backend
        return self._backend

    def _lookup_texts(self, texts: Sequence[str], k: int) -> SparseBatch:
        """Inference-free text vectors: tokenizer + query-map lookup, no model. The rows of a text's
        distinct wordpieces are summed; the ``k`` heaviest terms are kept and normalised as the model
        does. Empty texts give empty rows."""
        qmap = self.query_map
        if qmap is None:
            raise LexretError(f"{self.path} encodes texts with a network; it has no inference-free query map")
        encoded = self._wordpieces.encode_batch([t if t.strip() else "" for t in texts])
        indptr = np.zeros(len(texts) + 1, np.int64)
        idx_parts, val_parts = [], []
        for i, enc in enumerate(encoded):
            ids, w = qmap.vector(np.asarray(enc.ids, dtype=np.int64))
            keep = w > 0
            ids, w = ids[keep], w[keep]
            if k and ids.size > k:
                top = np.sort(np.argsort(-w, kind="stable")[:k])
                ids, w = ids[top], w[top]
            if self._normalize and w.size:
                w = w * (self._scale / max(float(np.sqrt(np.dot(w, w))), 1e-12))
            idx_parts.append(ids)
            val_parts.append(w)
            indptr[i + 1] = indptr[i] + ids.size
        indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
        values = np.concatenate(val_parts).astype(np.float32) if val_parts else np.zeros(0, np.float32)
        return SparseBatch(indptr, indices.astype(np.int32), values, len(self.vocab))

    def _to_batch(self, vecs: np.ndarray, k: int) -> SparseBatch:
        rows = []
        for v in vecs:
            nz = np.nonzero(v > 0)[0]
            if k and nz.size > k:
                nz = nz[np.argsort(-v[nz], kind="stable")[:k]]
            w = v[nz]
            if self._normalize and w.size:
                w = w * (self._scale / max(float(np.linalg.norm(w)), 1e-12))
            rows.append((self._active[nz], w))
        return SparseBatch.from_rows(rows, len(self.vocab))

    def prune(self, batch: SparseBatch, k: int) -> SparseBatch:
        """Re-prune vectors of this model to their ``k`` heaviest terms, re-normalised as the model
        does: ``prune(encode_texts(x, top_k=0), k)`` gives ``encode_texts(x, top_k=k)`` (up to float
        rounding), so one unpruned encoding serves every ``k``."""
        out = batch.top_k(k)
        if not self._normalize or out.nnz == 0:
            return out
        counts = out.terms_per_row()
        rows = np.repeat(np.arange(len(out)), counts)
        norms = np.sqrt(np.bincount(rows, weights=out.values.astype(np.float64) ** 2, minlength=len(out)))
        factor = self._scale / np.maximum(norms, 1e-12)
        values = (out.values * factor[rows]).astype(np.float32)
        return SparseBatch(out.indptr, out.indices, values, out.dim)

    @property
    def max_text_len(self) -> int:
        """Wordpieces the text backbone reads, ``[CLS]`` and ``[SEP]`` included; longer texts are cut."""
        from lexret.model.backbones import TEXT_MAX_LEN

        return TEXT_MAX_LEN

    def truncated(self, texts: Sequence[str]) -> list[int]:
        """Positions of the texts longer than :attr:`max_text_len` wordpieces: only their first
        ``max_text_len - 2`` wordpieces are encoded."""
        n = self.max_text_len
        tok = self.tokenizer(list(texts), truncation=True, max_length=n + 1)
        return [i for i, ids in enumerate(tok["input_ids"]) if len(ids) > n]

    def encode_texts(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, top_k: int | None = None
    ) -> SparseBatch:
        """Texts -> float32 SparseBatch, each row pruned to its ``top_k`` (default ``top_k_query``) terms.

        An empty or whitespace-only text gives an empty row (no terms): it is kept in place, never
        dropped, and never goes through the model. Texts longer than :attr:`max_text_len` wordpieces
        are truncated to it (see :meth:`truncated`)."""

        k = self.top_k_query if top_k is None else top_k
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise LexretError(f"text {i} is a {type(t).__name__}, not a string")
        if self.inference_free:
            if len(texts) <= batch_size:  # one query: no progress bar, no concatenation
                return self._lookup_texts(texts, k)
            return SparseBatch.concat(
                [
                    self._lookup_texts(texts[a : a + batch_size], k)
                    for a in _batches(len(texts), batch_size, progress, "encoding texts")
                ]
            )
        return self._network_texts(texts, k, batch_size, progress)

    def encode_text_documents(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, top_k: int | None = None
    ) -> SparseBatch:
        """Texts as *documents* (e.g. the captions of an image->text index), pruned to ``top_k`` (default
        ``top_k_text_doc``) terms. Most models encode a text one way, as :meth:`encode_texts` does; a model
        trained with ``caption_documents: encoder`` runs its text network for documents (offline work)
        and keeps the inference-free table for queries."""
        if not self.encoded_documents:
            return self.encode_texts(texts, batch_size=batch_size, progress=progress, top_k=top_k)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise LexretError(f"text {i} is a {type(t).__name__}, not a string")
        return self._network_texts(texts, self.top_k_text_doc if top_k is None else top_k, batch_size, progress)

    def caption_prior(self) -> tuple[SparseBatch, float] | None:
        """The model's caption-prior bank (image vectors, temperature), if its folder has one
        (:mod:`lexret.document_prior`)."""
        from lexret.document_prior import read_bank

        return read_bank(self.documents_path)

    def with_caption_priors(self, docs: SparseBatch) -> tuple[SparseBatch, dict[str, Any]]:
        """Caption documents with their prior term added, and the index metadata that makes searchers add
        the term to every query (:mod:`lexret.document_prior`). Raises if the model has no bank."""
        from lexret.document_prior import PRIOR_TERM, caption_priors, prior_meta, with_prior

        found = self.caption_prior()
        if found is None:
            raise LexretError(f"{self.path} has no caption-prior bank; build one with tools/prior_bank.py")
        bank, temperature = found
        scale = self._scale if self._normalize else 1.0
        priors = caption_priors(docs, bank, temperature)
        out = with_prior(docs, priors, int(self.vocab.ids([PRIOR_TERM])[0]), scale)
        return out, prior_meta(self.vocab, scale, temperature, len(bank), self.model_id)

    def _network_texts(self, texts: Sequence[str], k: int, batch_size: int, progress: bool) -> SparseBatch:
        """Texts through the text backbone and the model's text head (empty texts give empty rows)."""
        import torch

        parts = [SparseBatch.empty(0, len(self.vocab))]
        with torch.inference_mode():
            for a in _batches(len(texts), batch_size, progress, "encoding texts"):
                part = texts[a : a + batch_size]
                keep = [i for i, t in enumerate(part) if t.strip()]
                if not keep:
                    parts.append(SparseBatch.empty(len(part), len(self.vocab)))
                    continue
                states, mask = self._text_features([part[i] for i in keep])
                vecs = self.model.text_vectors(states, mask).numpy()
                if len(keep) < len(part):
                    full = np.zeros((len(part), vecs.shape[1]), dtype=vecs.dtype)
                    full[keep] = vecs
                    vecs = full
                parts.append(self._to_batch(vecs, k))
        return SparseBatch.concat(parts)

    def encode_images(
        self, images: Sequence[Any], batch_size: int = 32, progress: bool = False, top_k: int | None = None
    ) -> SparseBatch:
        """Image paths or PIL images -> float32 SparseBatch pruned to ``top_k`` (default ``top_k_doc``)."""
        import torch

        k = self.top_k_doc if top_k is None else top_k
        parts = [SparseBatch.empty(0, len(self.vocab))]
        with torch.inference_mode():
            for a in _batches(len(images), batch_size, progress, "encoding images"):
                feats = self._image_features(images[a : a + batch_size])
                parts.append(self.encode_image_features(feats, top_k=k))
        return SparseBatch.concat(parts)

    def encode_pixels(self, pixels: np.ndarray, top_k: int | None = None) -> SparseBatch:
        """Preprocessed images ``(B, 3, S, S)``, S = :attr:`image_size` (``lexret.data.preprocess_image(img,
        enc.image_size)``) as one batch: the rows ``encode_images`` gives for the same images in one batch."""
        import torch

        with torch.inference_mode():
            feats = self.image_backbone(torch.from_numpy(np.ascontiguousarray(pixels))).to(torch.float16).float()
        return self.encode_image_features(feats, top_k=top_k)

    def encode_image_features(self, feats: Any, top_k: int | None = None) -> SparseBatch:
        """Frozen-backbone patch features ``(B, n_patches, 1280)`` (49 Lite0, 81 Lite2) -> pruned SparseBatch."""
        import torch

        with torch.inference_mode():
            vecs = self.model.image_vectors(feats).numpy()
        batch = self._to_batch(vecs, self.top_k_doc if top_k is None else top_k)
        if self.df_cap is None and self.term_scale is None:
            return batch
        from lexret.model.term_scales import apply_per_term

        return apply_per_term(batch, self.term_scale, self.term_offset, self.df_cap)

    def decode(self, batch: SparseBatch, top: int = 20) -> list[list[tuple[str, float]]]:
        """The ``top`` heaviest ``(term, weight)`` pairs of each row, heaviest first."""
        out = []
        toks = self.vocab.tokens
        for i in range(len(batch)):
            idx, val = batch.row(i)
            order = np.argsort(-val, kind="stable")[:top]
            out.append([(toks[int(idx[j])], float(val[j])) for j in order])
        return out


class DenseEncoder(_Base):
    """Dense CLIP-style baseline: float32 L2-normalised vectors of ``dim`` dimensions."""

    kind = "dense"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.dim: int = int(self.model.cfg.dim)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import torch

        parts = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for a in _batches(len(texts), batch_size, progress, "encoding texts"):
                states, mask = self._text_features(texts[a : a + batch_size])
                parts.append(self.model.encode_text_states(states, mask).numpy().astype(np.float32))
        return np.concatenate(parts)

    def encode_images(self, images: Sequence[Any], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        import torch

        parts = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for a in _batches(len(images), batch_size, progress, "encoding images"):
                feats = self._image_features(images[a : a + batch_size])
                parts.append(self.encode_image_features(feats))
        return np.concatenate(parts)

    def encode_image_features(self, feats: Any) -> np.ndarray:
        """Frozen-backbone patch features ``(B, n_patches, 1280)`` -> float32 unit vectors."""
        import torch

        with torch.inference_mode():
            return self.model.encode_patches(feats).numpy().astype(np.float32)


def encode_images_both(
    images: Sequence[Any], sparse: SparseEncoder, dense: DenseEncoder, batch_size: int = 32, progress: bool = False
) -> tuple[SparseBatch, np.ndarray]:
    """Encode images with both models, running the shared frozen image backbone once per batch
    (it dominates the cost): the same vectors as ``encode_images`` of each model. Models on different
    image backbones each run their own."""
    import torch

    shared = dense.image_backbone_id == sparse.image_backbone_id
    if shared:
        dense._image = sparse.image_backbone
    sp = [SparseBatch.empty(0, len(sparse.vocab))]
    de = [np.zeros((0, dense.dim), np.float32)]
    with torch.inference_mode():
        for a in _batches(len(images), batch_size, progress, "encoding images (sparse + dense)"):
            part = images[a : a + batch_size]
            feats = sparse._image_features(part)
            sp.append(sparse.encode_image_features(feats))
            de.append(dense.encode_image_features(feats if shared else dense._image_features(part)))
    return SparseBatch.concat(sp), np.concatenate(de)


def encode_texts_both(
    texts: Sequence[str], sparse: SparseEncoder, dense: DenseEncoder, batch_size: int = 64, progress: bool = False
) -> tuple[SparseBatch, np.ndarray]:
    """Encode texts with both models, running the shared frozen text backbone once per batch (an
    inference-free sparse model needs only its tokenizer)."""
    import torch

    if sparse.inference_free:
        return (
            sparse.encode_texts(texts, batch_size=batch_size, progress=progress),
            dense.encode_texts(texts, batch_size=batch_size, progress=progress),
        )

    dense._text = sparse.text_backbone
    sp = [SparseBatch.empty(0, len(sparse.vocab))]
    de = [np.zeros((0, dense.dim), np.float32)]
    with torch.inference_mode():
        for a in _batches(len(texts), batch_size, progress, "encoding texts (sparse + dense)"):
            states, mask = sparse._text_features(texts[a : a + batch_size])
            sp.append(sparse._to_batch(sparse.model.text_vectors(states, mask).numpy(), sparse.top_k_query))
            de.append(dense.model.encode_text_states(states, mask).numpy().astype(np.float32))
    return SparseBatch.concat(sp), np.concatenate(de)


SIDES = ("image", "text")


def encode_side(
    side: str, items: Sequence[Any], sparse: SparseEncoder, dense: DenseEncoder | None = None, *,
    batch_size: int | None = None, progress: bool = False,
) -> tuple[SparseBatch, np.ndarray | None]:  # fmt: skip
    """Images (``side="image"``) or texts with the sparse model and, when given, the dense one (through
    :func:`encode_images_both` / :func:`encode_texts_both`, the backbones run once); the dense array is
    ``None`` without a dense model. ``batch_size`` defaults to 32 for images, 64 for texts. The one
    in-process encoding of ``lexret eval`` and ``lexret compare``, and what their Ray actors run on parts."""
    if side not in SIDES:
        raise LexretError(f"side must be one of {SIDES}, not {side!r}")
    bs = batch_size or (32 if side == "image" else 64)
    items = list(items)
    if dense is None:
        if side == "image":
            return sparse.encode_images(items, batch_size=bs, progress=progress), None
        return sparse.encode_texts(items, batch_size=bs, progress=progress), None
    both = encode_images_both if side == "image" else encode_texts_both
    return both(items, sparse, dense, batch_size=bs, progress=progress)
