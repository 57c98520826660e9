"""One chunk of an encoding job: the same code for ``lexret encode`` and for each part of
``lexret encode --ray``, so that an item gets the same vector, bit for bit, either way (both encode
the same whole batches, aligned to the job's first item)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lexret.types import SparseBatch

log = logging.getLogger(__name__)


def encode_image_chunk(
    enc, ids: Sequence[str], files: Sequence[Path | str], listed_in: str | None, lines: Sequence,
    top_k: int, batch_size: int, on_error: str,
) -> tuple[list[str], SparseBatch, list[tuple[str, str]]]:  # fmt: skip
    """Decode and encode ``files`` a batch at a time (memory holds one batch of pixels); a bad image
    raises (``on_error="stop"``) or is skipped and returned as ``(id, reason)``."""
    from lexret.data import load_image, preprocess_image
    from lexret.errors import InputError

    chunk_ids: list[str] = []
    parts = [SparseBatch.empty(0, len(enc.vocab))]
    skipped: list[tuple[str, str]] = []
    for b in range(0, len(ids), batch_size):
        pixels, good = [], []
        for i in range(b, min(b + batch_size, len(ids))):
            try:
                img = load_image(files[i], path=listed_in, line=lines[i], size=enc.image_size)
                pixels.append(preprocess_image(img, enc.image_size))
            except InputError as e:
                if on_error == "stop":
                    raise
                log.warning("skipping %s", e)
                skipped.append((ids[i], str(e)))
                continue
            good.append(ids[i])
        if good:
            parts.append(enc.encode_pixels(np.stack(pixels), top_k=top_k))
            chunk_ids += good
    return chunk_ids, SparseBatch.concat(parts), skipped


def encode_text_chunk(
    enc, texts: Sequence[str], top_k: int, batch_size: int, documents: bool = False
) -> tuple[SparseBatch, list[int]]:
    """The vectors of ``texts`` (as documents when ``documents``: see
    :meth:`lexret.encoders.SparseEncoder.encode_text_documents`) and the positions of those truncated
    to the model's length."""
    encode = enc.encode_text_documents if documents else enc.encode_texts
    return encode(list(texts), batch_size=batch_size, top_k=top_k), enc.truncated(list(texts))
