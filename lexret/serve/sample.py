"""The embedded 100-image sample as a ready index, so that ``lexret serve`` without ``--index`` shows
something at once.

On first start the sample's images and captions are encoded with the serving model and indexed into
``CACHE/serve/sample-<model>-<vocab>/`` (an image index, a caption index, with the model's caption
priors when it ships a bank, and the captions' texts);
later starts reuse them while they match the model. Each index is built atomically by
:class:`lexret.indexer.Indexer`, so an interrupted first start leaves nothing half-built.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lexret.errors import LexretError
from lexret.fileio import atomic_write

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "resources" / "flickr8k_sample"
SAMPLE_CAPTIONS = SAMPLE_DIR / "captions.jsonl"
CACHE_ENV = "LEXRET_CACHE_DIR"
TEXTS_FILE = "captions-texts.jsonl"
ENCODE_BATCH = 16


@dataclass(frozen=True)
class SampleIndexes:
    images: Path  # index of the sample's images, ids relative to ``root``
    captions: Path  # index of the sample's captions, ids ``IMAGE#n``
    texts: Path  # JSONL {"id", "text", "image"} of the captions
    root: Path  # the folder the image ids are relative to


def default_cache_dir() -> Path:
    """``$LEXRET_CACHE_DIR``, else ``$XDG_CACHE_HOME/lexret``, else ``~/.cache/lexret``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lexret"


def sample_folder(cache_dir: Path, model_id: str, vocab_hash: str) -> Path:
    vocab = vocab_hash.split(":")[-1][:12]
    return cache_dir / "serve" / re.sub(r"[^A-Za-z0-9._-]+", "-", f"sample-{model_id}-{vocab}")


def _usable(index_dir: Path, model_id: str, with_prior: bool = False) -> bool:
    """An index of ``model_id`` that keeps its vectors (and, with ``with_prior``, carries caption priors)."""
    from lexret.document_prior import META_KEY
    from lexret.index_meta import read_meta

    try:
        meta = read_meta(index_dir)
    except LexretError:
        return False
    return meta.get("model_id") == model_id and bool(meta.get("has_docvectors")) and (META_KEY in meta) == with_prior


def ensure_sample_indexes(encoder, cache_dir: Path | None = None, heap: str | None = None) -> SampleIndexes:
    """The sample's indexes for ``encoder`` (a :class:`~lexret.encoders.SparseEncoder`), built if missing."""
    from lexret.data import load_captions

    folder = sample_folder(cache_dir or default_cache_dir(), encoder.model_id, encoder.vocab.hash)
    out = SampleIndexes(folder / "images", folder / "captions", folder / TEXTS_FILE, SAMPLE_DIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LexretError(f"cannot create the cache folder {folder} ({e.strerror}); pass --cache-dir") from None
    coll = load_captions(SAMPLE_CAPTIONS)
    if not _usable(out.images, encoder.index_model_id):
        log.info("first start: indexing the %d sample images into %s", len(coll), out.images)
        batch = encoder.encode_images([it.image for it in coll.items], batch_size=ENCODE_BATCH, progress=True)
        _build(encoder, [it.key for it in coll.items], batch, out.images, "image", heap)
    cap_ids = [f"{it.key}#{j}" for it in coll.items for j in range(len(it.captions))]
    # captions carry the model's caption priors when it has a bank (image->text, lexret.document_prior)
    with_prior = encoder.caption_prior() is not None
    if not _usable(out.captions, encoder.index_model_id, with_prior) or not out.texts.is_file():
        log.info("first start: indexing the %d sample captions into %s", len(cap_ids), out.captions)
        batch = encoder.encode_text_documents(coll.captions, progress=True)
        extra = None
        if with_prior:
            batch, extra = encoder.with_caption_priors(batch)
        _build(encoder, cap_ids, batch, out.captions, "text", heap, extra)
        with atomic_write(out.texts) as f:
            for cid, text, owner in zip(cap_ids, coll.captions, coll.caption_owner.tolist()):
                f.write(json.dumps({"id": cid, "text": text, "image": coll.items[owner].key}) + "\n")
    return out


def _build(
    encoder, ids: list[str], batch, out: Path, modality: str, heap: str | None, extra: dict | None = None
) -> None:
    from lexret.indexer import IndexConfig, Indexer, IndexInfo

    info = IndexInfo(model_id=encoder.index_model_id, modality=modality, source=str(SAMPLE_CAPTIONS))
    Indexer(encoder.vocab, IndexConfig(threads=1, heap=heap)).build(
        [(ids, batch)], out, info, total=len(ids), extra_meta=extra
    )
