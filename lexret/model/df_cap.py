"""Document-frequency caps on image vectors: static pruning of the postings of frequent terms.

A caption query reads, in an inverted index, every posting of each of its terms, so a term held by 20%
of the images costs 200,000 postings per query at 1M images, whatever its weight. A DF cap keeps, for
every term, only its ``cap`` share of the collection: the postings whose weights are highest. Each term
``t`` gets a threshold ``tau_t`` (0 for terms held by fewer than ``cap`` of the images), and an image
keeps term ``t`` only if its (normalised) weight is at least ``tau_t``. The other weights are left as
they are: an image loses the weak mentions of frequent terms (a *man* in the background, *water* on a
picture of a beach) and keeps its strong ones and all of its rare terms.

The thresholds are estimated once, on training images, and stored with the model
(``df_cap.safetensors``: term ids, thresholds, the cap); they hold at any collection size as long as
the collection's term distribution is that of the training images. Applied at encoding time
(:class:`lexret.encoders.SparseEncoder`), every index built from the vectors carries the capped
postings; a query map trained with ``lexret train-queries --df-cap`` learns its queries against them.

No torch here: numpy, for the encoding path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexret.errors import LexretError
from lexret.fileio import load_arrays, save_arrays

DF_CAP_FILE = "df_cap.safetensors"


@dataclass
class DfCap:
    """Per-term weight thresholds: ``thresholds[i]`` for term id ``terms[i]`` (normalised-vector units,
    i.e. before ``output_scale``), estimated so that at most ``cap`` of the images keep each term."""

    terms: np.ndarray
    thresholds: np.ndarray
    cap: float

    def __post_init__(self) -> None:
        self.terms = np.asarray(self.terms, dtype=np.int64)
        self.thresholds = np.asarray(self.thresholds, dtype=np.float32)
        if self.terms.shape != self.thresholds.shape or self.terms.ndim != 1:
            raise LexretError("a DF cap needs one threshold per term id")
        if not 0.0 < self.cap <= 1.0:
            raise LexretError(f"a DF cap is a share of the images in (0, 1], not {self.cap}")
        if self.thresholds.size and float(self.thresholds.min()) < 0:
            raise LexretError("DF-cap thresholds must be non-negative")

    @classmethod
    def estimate(cls, values: np.ndarray, indices: np.ndarray, n_docs: int, cap: float) -> DfCap:
        """Thresholds from the nonzero ``values`` (with their term ``indices``) of ``n_docs`` normalised
        document vectors: a term held by more than ``cap * n_docs`` of them keeps its ``cap * n_docs``
        heaviest postings (ties at the threshold are kept)."""
        if not 0.0 < cap <= 1.0:
            raise LexretError(f"--df-cap is a share of the images in (0, 1], not {cap}")
        if n_docs < 1:
            raise LexretError("a DF cap needs at least one document to estimate its thresholds")
        values = np.asarray(values, dtype=np.float32)
        indices = np.asarray(indices, dtype=np.int64)
        keep = max(1, int(cap * n_docs))
        order = np.lexsort((-values, indices))  # by term, heaviest first within a term
        idx_sorted, val_sorted = indices[order], values[order]
        terms, starts, counts = np.unique(idx_sorted, return_index=True, return_counts=True)
        over = counts > keep
        thresholds = val_sorted[starts[over] + keep - 1]  # the keep-th heaviest weight of each frequent term
        return cls(terms[over], thresholds, float(cap))

    def dense(self, dim: int) -> np.ndarray:
        """``(dim,)`` thresholds over term ids (0 where a term is not capped)."""
        out = np.zeros(dim, np.float32)
        if self.terms.size and int(self.terms.max()) >= dim:
            raise LexretError(f"a DF cap names term {int(self.terms.max())}, beyond the vocabulary's {dim}")
        out[self.terms] = self.thresholds
        return out

    def keep_mask(self, indices: np.ndarray, values: np.ndarray, dim: int, scale: float = 1.0) -> np.ndarray:
        """Which postings ``(indices, values)`` (values in units of ``scale`` x normalised) are kept."""
        return np.asarray(values) >= self.dense(dim)[np.asarray(indices)] * scale

    def save(self, folder: Path) -> Path:
        arrays = {"terms": self.terms.astype(np.int32), "thresholds": self.thresholds, "cap": np.array([self.cap])}
        return save_arrays(Path(folder) / DF_CAP_FILE, arrays)

    @classmethod
    def load(cls, folder: Path) -> DfCap:
        t = load_arrays(
            Path(folder) / DF_CAP_FILE,
            {"terms", "thresholds", "cap"},
            "the model's DF-cap thresholds (retrain with --df-cap)",
        )
        return cls(t["terms"], t["thresholds"], float(t["cap"][0]))
