"""Caption priors: a fix for hubness in image->text search (issue 17).

Measured (``tools/i2t_gap.py``, docs/training.md): with sparse vectors some captions score high
against *every* image (35% of the val captions are in no image's top-10, against 20% for the dense
baseline), so image->text trails dense although text->image does not. The inverted softmax
(normalising each caption's scores over a bank of images) removes that, and for one caption it is a
constant: ranking captions for image ``i`` by ``log softmax_j(s_cj / T)[i]`` is ranking them by

    s_ci - T * logsumexp_j(s_cj / T)

so each caption document gets one additive **prior** ``-T * logsumexp_j(s_cj / T)``, computed once at
index time over a fixed bank of *training* images shipped with the model (never the searched ones).

An impact index holds the prior as one reserved term, :data:`PRIOR_TERM`: a document's weight for it
is its prior shifted to be non-negative (a shift common to all documents changes no ranking), and the
searcher adds the term to every query with weight :data:`PRIOR_QUERY_WEIGHT` in the model's units,
so that ``query . document`` gains exactly the prior. The index metadata says so (``query_prior``), so
every backend (Lucene, exact, Seismic, sharded) scores it without knowing about priors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lexret.errors import LexretError
from lexret.types import SparseBatch

PRIOR_TERM = "[unused0]"  # a wordpiece no model emits
BANK_FILE = "caption_prior_bank.npz"  # in a sparse checkpoint folder: bank image vectors + temperature
META_KEY = "query_prior"


def _row_normalized(batch: SparseBatch):
    """The batch as a scipy CSR matrix with unit-norm rows (empty rows stay empty)."""
    import scipy.sparse as sp

    m = sp.csr_matrix((batch.values.astype(np.float64), batch.indices, batch.indptr), shape=(len(batch), batch.dim))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m


def caption_priors(docs: SparseBatch, bank: SparseBatch, temperature: float, chunk: int = 2048) -> np.ndarray:
    """``-T * logsumexp_j(cos(doc, bank_j) / T)`` for every document (cosine of the vectors as encoded)."""
    if temperature <= 0:
        raise LexretError(f"a caption prior needs a positive temperature, got {temperature}")
    if len(bank) == 0:
        raise LexretError("a caption prior needs a non-empty bank of image vectors")
    d, b = _row_normalized(docs), _row_normalized(bank).T.tocsc()
    out = np.zeros(len(docs), np.float64)
    for a in range(0, len(docs), chunk):
        s = np.asarray((d[a : a + chunk] @ b).todense()) / temperature
        m = s.max(1)
        out[a : a + chunk] = -temperature * (m + np.log(np.exp(s - m[:, None]).sum(1)))
    return out


def with_prior(docs: SparseBatch, priors: np.ndarray, term_id: int, output_scale: float) -> SparseBatch:
    """``docs`` with the term ``term_id`` weighted ``output_scale * (prior - min prior)`` (in the units of
    vectors scaled to norm ``output_scale``, so that a query weight ``output_scale`` adds the prior to
    the cosine scaled by ``output_scale ** 2``). The document with the lowest prior gets no such term."""
    if len(priors) != len(docs):
        raise LexretError(f"{len(priors)} priors for {len(docs)} documents")
    if np.any(docs.indices == term_id):
        raise LexretError(f"the documents already hold the reserved prior term {PRIOR_TERM}")
    offset = output_scale * (priors - priors.min()) if len(priors) else priors
    rows = []
    for i in range(len(docs)):
        idx, val = docs.row(i)
        if offset[i] > 0:
            idx, val = np.append(idx, term_id), np.append(val, np.float32(offset[i]))
        rows.append((idx, val))
    return SparseBatch.from_rows(rows, docs.dim)


def prior_meta(vocab, output_scale: float, temperature: float, bank_size: int, model_id: str) -> dict[str, Any]:
    """The index metadata entry that makes searchers add the prior term to every query."""
    return {
        META_KEY: {
            "term": PRIOR_TERM,
            "term_id": int(vocab.ids([PRIOR_TERM])[0]),
            "query_weight": float(output_scale),
            "temperature": float(temperature),
            "bank_images": int(bank_size),
            "bank_model_id": model_id,
        }
    }


def add_query_prior(queries: SparseBatch, meta: dict[str, Any]) -> SparseBatch:
    """Every query with the index's prior term (``meta`` = the index's ``query_prior`` entry) added."""
    term, weight = int(meta["term_id"]), float(meta["query_weight"])
    rows = []
    for i in range(len(queries)):
        idx, val = queries.row(i)
        keep = idx != term  # a query never sets the reserved term itself
        rows.append((np.append(idx[keep], term), np.append(val[keep], np.asarray(weight, dtype=val.dtype))))
    return SparseBatch.from_rows(rows, queries.dim, dtype=queries.values.dtype)


def read_bank(model_dir: str | Path) -> tuple[SparseBatch, float] | None:
    """The caption-prior bank of a sparse checkpoint folder (image vectors, temperature), if it has one."""
    path = Path(model_dir) / BANK_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            bank = SparseBatch(z["indptr"], z["indices"], z["values"], int(z["dim"]))
            temperature = float(z["temperature"])
    except (OSError, KeyError, ValueError) as e:
        raise LexretError(f"{path} is not a readable caption-prior bank ({e}); rebuild it (tools/prior_bank.py)") from e
    return bank, temperature


def write_bank(model_dir: str | Path, bank: SparseBatch, temperature: float) -> Path:
    path = Path(model_dir) / BANK_FILE
    np.savez_compressed(
        path, indptr=bank.indptr, indices=bank.indices, values=bank.values.astype(np.float16),
        dim=np.int64(bank.dim), temperature=np.float64(temperature),
    )  # fmt: skip
    return path
