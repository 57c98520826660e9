"""Sparse vectors on disk.

JSONL, one item a line: ``{"id": "...", "vector": {"term": weight, ...}}`` with vocabulary term
strings (``dog``, ``##s``, ``[unused5]``) and float or int weights. A binary ``.npz`` form (CSR +
ids + vocabulary hash) is read and written the same way, much faster. An optional sidecar
``<file>.meta.json`` carries what produced the vectors (model id, vocabulary hash), so that
``lexret index`` can record it and ``lexret search`` can check queries against the index.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lexret.errors import InputError
from lexret.fileio import atomic_write, write_json
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]
META_SUFFIX = ".meta.json"


@dataclass
class VectorSet:
    """Ids, their vectors and what produced them."""

    ids: list[str]
    batch: SparseBatch
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def meta_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + META_SUFFIX)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The sidecar metadata of a vector file (the manifest of a folder of parts), or ``{}`` when there is none."""
    if Path(path).is_dir():
        from lexret.vector_parts import read_manifest

        return read_manifest(path)
    mp = meta_path(path)
    if not mp.is_file():
        return {}
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"unreadable metadata ({e}); delete it or rewrite the vectors", path=str(mp)) from None
    if not isinstance(meta, dict):
        raise InputError("metadata must be a JSON object", path=str(mp))
    return meta


def write_vectors(
    path: str | Path,
    ids: Sequence[str],
    batch: SparseBatch,
    vocab: Vocabulary,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write ``batch`` as JSONL (or ``.npz`` by suffix) atomically: the final name appears only
    when the file is complete."""
    path = Path(path)
    check_ids(list(ids), len(batch), str(path))
    if len(vocab) != batch.dim:
        raise ValueError(f"vocabulary has {len(vocab)} terms, vectors have dim {batch.dim}")
    meta = dict(meta or {})
    meta.setdefault("vocab_hash", vocab.hash)
    if path.suffix == ".npz":
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                ids=np.array(list(ids), dtype=str),
                indptr=batch.indptr,
                indices=batch.indices,
                values=batch.values,
                dim=np.array(batch.dim),
                meta=np.array(json.dumps(meta)),
            )
    else:
        with atomic_write(path) as f:
            f.writelines(vector_lines(ids, batch, vocab))
    write_json(meta_path(path), meta)


def vector_lines(ids: Sequence[str], batch: SparseBatch, vocab: Vocabulary) -> Iterator[str]:
    """The JSONL lines of ``batch`` (each ending in a newline), exactly as :func:`write_vectors` writes them."""
    for docid, vec in zip(ids, batch.to_dicts(vocab)):
        yield json.dumps({"id": docid, "vector": vec}, ensure_ascii=False) + "\n"


def _parse_line(line: str, n: int, path: str, vocab: Vocabulary) -> tuple[str, np.ndarray, np.ndarray]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg}); each line must be one JSON object", path=path, line=n) from None
    if not isinstance(obj, dict):
        raise InputError('each line must be a JSON object {"id": ..., "vector": {...}}', path=path, line=n)
    if "id" not in obj or "vector" not in obj:
        missing = [k for k in ("id", "vector") if k not in obj]
        raise InputError(f"missing field {', '.join(missing)}", path=path, line=n)
    docid = obj["id"]
    if isinstance(docid, bool) or not isinstance(docid, str | int):
        raise InputError(f"id must be a string, got {type(docid).__name__}", path=path, line=n)
    docid = str(docid)
    if not docid or any(c.isspace() for c in docid):
        raise InputError(
            f"id {docid!r} is empty or contains whitespace (run files are space separated)", path=path, line=n
        )
    vec = obj["vector"]
    if not isinstance(vec, dict):
        raise InputError(f"vector must be an object of term: weight, got {type(vec).__name__}", path=path, line=n)
    idx = np.empty(len(vec), dtype=np.int64)
    val = np.empty(len(vec), dtype=np.float64)
    for j, (term, w) in enumerate(vec.items()):
        t = vocab.get(term)
        if t is None:
            raise InputError(
                f"term {term!r} is not in the vocabulary ({vocab.hash}, {len(vocab)} terms); "
                "encode with a model that uses this vocabulary or pass --vocab",
                path=path,
                line=n,
            )
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise InputError(f"weight of {term!r} must be a number, got {w!r}", path=path, line=n)
        if not math.isfinite(w):
            raise InputError(f"weight of {term!r} is {w}; weights must be finite", path=path, line=n)
        if abs(w) > 1e9:
            raise InputError(f"weight of {term!r} is {w}, beyond any sensible term weight", path=path, line=n)
        idx[j], val[j] = t, w
    return docid, idx, val


def iter_vectors(
    path: str | Path,
    vocab: Vocabulary,
    *,
    chunk_size: int = 10_000,
    on_error: OnError = "stop",
    skipped: list[tuple[int, str]] | None = None,
) -> Iterator[tuple[list[str], SparseBatch]]:
    """Stream a JSONL vector file in chunks of ``(ids, SparseBatch)``.

    Ids must be unique across the file. With ``on_error="skip"`` bad lines are appended to
    ``skipped`` as ``(line, reason)`` and left out; with ``"stop"`` the first raises.
    """
    p = Path(path)
    spath = str(p)
    if p.is_dir():
        yield from _iter_parts(p, vocab, chunk_size)
        return
    if not p.is_file():
        raise InputError("vector file not found", path=spath)
    if p.suffix == ".npz":
        vs = _read_npz(p, vocab)
        for a in range(0, len(vs), chunk_size):
            yield vs.ids[a : a + chunk_size], vs.batch.slice(a, a + chunk_size)
        return
    seen: dict[str, int] = {}
    ids: list[str] = []
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                docid, idx, val = _parse_line(line, n, spath, vocab)
                if docid in seen:
                    raise InputError(
                        f"id {docid!r} already used on line {seen[docid]}; ids must be unique", path=spath, line=n
                    )
                if np.unique(idx).size != idx.size:
                    raise InputError("a term appears twice in one vector", path=spath, line=n)
            except InputError as e:
                if on_error == "stop":
                    raise
                if skipped is not None:
                    skipped.append((n, str(e)))
                continue
            seen[docid] = n
            ids.append(docid)
            rows.append((idx, val))
            if len(ids) >= chunk_size:
                yield ids, _rows_to_batch(rows, len(vocab))
                ids, rows = [], []
    if ids:
        yield ids, _rows_to_batch(rows, len(vocab))


def _iter_parts(p: Path, vocab: Vocabulary, chunk_size: int) -> Iterator[tuple[list[str], SparseBatch]]:
    """A folder written by ``lexret encode --ray`` (:mod:`lexret.vector_parts`), part after part."""
    from lexret.vector_parts import part_paths, read_manifest

    for f in part_paths(p, read_manifest(p)):
        vs = _read_npz(f, vocab)
        for a in range(0, len(vs), chunk_size):
            yield vs.ids[a : a + chunk_size], vs.batch.slice(a, a + chunk_size)


def _rows_to_batch(rows: list[tuple[np.ndarray, np.ndarray]], dim: int) -> SparseBatch:
    is_int = all(np.all(v == np.rint(v)) for _, v in rows)
    batch = SparseBatch.from_rows(rows, dim, dtype=np.float64)
    if is_int:
        return SparseBatch(batch.indptr, batch.indices, batch.values.astype(np.int64), dim)
    return SparseBatch(batch.indptr, batch.indices, batch.values.astype(np.float32), dim)


def _read_npz(p: Path, vocab: Vocabulary) -> VectorSet:
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            batch = SparseBatch(z["indptr"], z["indices"], z["values"], int(z["dim"]))
            ids = [str(x) for x in z["ids"]]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"not a lexret .npz vector file ({e})", path=str(p)) from None
    if meta.get("vocab_hash") not in (None, vocab.hash):
        raise InputError(
            f"vectors use vocabulary {meta['vocab_hash']}, expected {vocab.hash}; pass the matching --vocab",
            path=str(p),
        )
    check_ids(ids, len(batch), str(p))
    return VectorSet(ids, batch, meta)


_WHITESPACE = re.compile(r"\s")


def check_ids(ids: list[str], n: int, path: str) -> None:
    """The id rules of the JSONL reader: as many ids as vectors, non-empty, no whitespace, unique."""
    if len(ids) != n:
        raise InputError(f"{len(ids)} ids for {n} vectors; each vector needs exactly one id", path=path)
    for i, docid in enumerate(ids):
        if not docid or _WHITESPACE.search(docid):
            raise InputError(
                f"id {docid!r} (item {i + 1}) is empty or contains whitespace (run files are space separated)",
                path=path,
            )
    if len(set(ids)) != len(ids):
        first: dict[str, int] = {}
        for i, docid in enumerate(ids):
            if docid in first:
                raise InputError(
                    f"id {docid!r} of item {i + 1} already used by item {first[docid] + 1}; ids must be unique",
                    path=path,
                )
            first[docid] = i


def read_vectors(path: str | Path, vocab: Vocabulary, *, on_error: OnError = "stop") -> VectorSet:
    """Read a whole vector file (JSONL or .npz) with its sidecar metadata."""
    p = Path(path)
    if p.suffix == ".npz" and p.is_file():
        vs = _read_npz(p, vocab)
        vs.meta = {**read_meta(p), **vs.meta}
        return vs
    skipped: list[tuple[int, str]] = []
    ids: list[str] = []
    parts: list[SparseBatch] = []
    for chunk_ids, chunk in iter_vectors(p, vocab, on_error=on_error, skipped=skipped):
        ids.extend(chunk_ids)
        parts.append(chunk)
    if skipped:
        log.warning("%s: skipped %d bad line(s):", p, len(skipped))
        for _, reason in skipped[:20]:
            log.warning("  %s", reason)
        if len(skipped) > 20:
            log.warning("  ... and %d more", len(skipped) - 20)
    if not ids:
        raise InputError('holds no vectors; each line must be {"id": ..., "vector": {term: weight}}', path=str(p))
    if any(b.is_integer for b in parts) and not all(b.is_integer for b in parts):
        parts = [SparseBatch(b.indptr, b.indices, b.values.astype(np.float32), b.dim) for b in parts]
    return VectorSet(ids, SparseBatch.concat(parts), read_meta(p), skipped)
