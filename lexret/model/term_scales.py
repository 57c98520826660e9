"""Learned per-term scales and offsets on image vectors: ``w'_t = relu(a_t * w_t - b_t)``.

A query map (``lexret train-queries --image-terms``) can learn, with its queries, one scale ``a_t`` and one
offset ``b_t`` per term of the documents' model's image vectors. Trained on v7 (docs/training.md,
query map v3), the words captions use most went up (*man* 1.34, *two* 1.32) and odd terms down, and
the map's queries read ~10% fewer postings at equal or better ranking on held-out training images;
an offset above a term's weakest weights drops those postings from the images altogether. Images as
image->text queries go through the same transform; the map is trained with that direction too.

Weights are in normalised-vector units (before ``output_scale``): an encoder applies
``relu(a_t * v - b_t * output_scale)`` to its scaled vectors. Stored as ``term_scales.safetensors`` (term
ids, scales, offsets) in the map's folder; a model with it has its own image vectors, so its indexes
carry its own model id. No torch here: numpy, for the encoding path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexret.errors import LexretError
from lexret.fileio import load_arrays, save_arrays
from lexret.types import SparseBatch

TERM_SCALES_FILE = "term_scales.safetensors"


@dataclass
class TermScales:
    """``scales[i]`` and ``offsets[i]`` for term id ``terms[i]``; other terms keep their weights."""

    terms: np.ndarray
    scales: np.ndarray
    offsets: np.ndarray

    def digest(self) -> str:
        """A short fingerprint of the transform: models whose images differ get different ids."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.terms, self.scales, self.offsets):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:8]

    def __post_init__(self) -> None:
        self.terms = np.asarray(self.terms, dtype=np.int64)
        self.scales = np.asarray(self.scales, dtype=np.float32)
        self.offsets = np.asarray(self.offsets, dtype=np.float32)
        if self.terms.ndim != 1 or self.scales.shape != self.terms.shape or self.offsets.shape != self.terms.shape:
            raise LexretError("term scales need one scale and one offset per term id")
        if self.scales.size and float(self.scales.min()) < 0:
            raise LexretError("term scales must be non-negative")

    def dense(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(dim,)`` scales (1 where a term has none) and offsets (0) over term ids."""
        if self.terms.size and (int(self.terms.max()) >= dim or int(self.terms.min()) < 0):
            raise LexretError(f"term scales name a term outside the vocabulary of {dim}")
        a, b = np.ones(dim, np.float32), np.zeros(dim, np.float32)
        a[self.terms], b[self.terms] = self.scales, self.offsets
        return a, b

    def save(self, folder: Path) -> Path:
        arrays = {"terms": self.terms.astype(np.int32), "scales": self.scales, "offsets": self.offsets}
        return save_arrays(Path(folder) / TERM_SCALES_FILE, arrays)

    @classmethod
    def load(cls, folder: Path) -> TermScales:
        t = load_arrays(Path(folder) / TERM_SCALES_FILE, {"terms", "scales", "offsets"},
                        "the model's image term scales (retrain with --image-terms)")  # fmt: skip
        return cls(t["terms"], t["scales"], t["offsets"])


def apply_per_term(batch: SparseBatch, scale: np.ndarray | None, offset: np.ndarray | None,
                   floor: np.ndarray | None = None) -> SparseBatch:  # fmt: skip
    """``relu(scale_t * v - offset_t)`` on every posting (``scale``/``offset`` over term ids, None: 1/0),
    then drop postings under ``floor_t`` (a DF cap's thresholds, on the input weights) and zeros."""
    v = batch.values.astype(np.float32)
    keep = np.ones(v.size, bool) if floor is None else v >= floor[batch.indices]
    if scale is not None:
        v = v * scale[batch.indices]
    if offset is not None:
        v = v - offset[batch.indices]
    keep &= v > 0
    rows = np.repeat(np.arange(len(batch)), batch.terms_per_row())
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(batch)))])
    return SparseBatch(indptr, batch.indices[keep], v[keep].astype(np.float32), batch.dim)
