"""The self-describing index folder: ``lexret.json`` beside the engine's files.

It records what built the index (model id, vocabulary hash, quantization, the engine and its
build parameters), what it holds (counts, modality, empty documents) and the size of every engine
file, so that a search can refuse an index built for another model, scale or vocabulary, or by
another engine, and notice a damaged one, with a message that says what to rebuild.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lexret.errors import IndexIntegrityError, IndexMismatchError
from lexret.fileio import write_json

META_FILE = "lexret.json"
UNKNOWN_MODEL = "unknown"  # recorded when vectors came without a model id: not checked at search
# /2: Lucene holds documents under short ids (lexret.lucene_ids), listed in lucene_ids.
# /3: Lucene holds the collection's own ids unless built with short ids (lucene_ids.scheme says
# which), so stock Anserini/Pyserini can search the folder. A format-2 folder is a short-id folder
# and is read as one; a lexret that reads only format 2 refuses format 3, whose ids it would
# misread as short ones.
FORMAT = "lexret-index/3"
READABLE_FORMATS = ("lexret-index/2", FORMAT)
# Files lexret writes beside Lucene's; not part of the Lucene index proper.
SIDE_FILES = (META_FILE, "docids.txt", "docvectors.npz", "build.log")
# The engines an index folder can hold (``engine`` in lexret.json; folders without it are Lucene's).
ENGINES = ("lucene", "seismic")
DEFAULT_ENGINE = "lucene"


def engine_of(meta: dict[str, Any]) -> str:
    """The engine whose files the folder holds."""
    return str(meta.get("engine", DEFAULT_ENGINE))


def rebuild_command(meta: dict[str, Any] | None, index_dir: str | Path) -> str:
    """The command that rebuilds ``index_dir`` with the folder's engine."""
    engine = engine_of(meta) if isinstance(meta, dict) else DEFAULT_ENGINE
    flag = "" if engine == DEFAULT_ENGINE else f" --engine {engine}"
    return f"`lexret index{flag} --out {index_dir}`"


# times a folder check is repeated when the folder was swapped by a rebuild while it ran
SWAP_RETRIES = 3


def lucene_files(index_dir: Path) -> dict[str, int]:
    """Name -> size of the Lucene files in ``index_dir`` (everything but lexret's own files)."""
    return {
        p.name: p.stat().st_size
        for p in sorted(index_dir.iterdir())
        if p.is_file() and p.name not in SIDE_FILES and p.name != "write.lock"
    }


def write_meta(index_dir: Path, meta: dict[str, Any]) -> None:
    write_json(index_dir / META_FILE, meta)


def read_meta(index_dir: str | Path, *, verify_files: bool = True) -> dict[str, Any]:
    """Read and check ``lexret.json``; raises :class:`IndexIntegrityError` on a damaged folder.

    A rebuild swaps a new folder into place while searchers may be opening the old one; a check
    that read the metadata of one and listed the files of the other is repeated (the folder's inode
    tells a swap from damage)."""
    d = Path(index_dir)
    for _ in range(SWAP_RETRIES):
        before = _inode(d)
        try:
            return _read_meta_once(d, verify_files)
        except IndexIntegrityError:
            if before is None or _inode(d) == before:
                raise
    return _read_meta_once(d, verify_files)


def _inode(d: Path) -> int | None:
    try:
        return d.stat().st_ino
    except OSError:
        return None


def _read_meta_once(d: Path, verify_files: bool) -> dict[str, Any]:
    if not d.exists():
        raise IndexIntegrityError(f"index {d} does not exist; build it with `lexret index --out {d}`")
    if not d.is_dir():
        raise IndexIntegrityError(f"index {d} is not a folder; pass the folder `lexret index --out` created")
    mp = d / META_FILE
    if not mp.is_file():
        raise IndexIntegrityError(
            f"{d} has no {META_FILE}: it was not built by lexret or its build did not finish; "
            f"rebuild it with `lexret index --out {d}`"
        )
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise IndexIntegrityError(f"{mp} is unreadable ({e}); rebuild the index with `lexret index`") from None
    required = ("format", "model_id", "vocab_hash", "quantization", "num_docs", "files")
    if not isinstance(meta, dict) or any(k not in meta for k in required):
        raise IndexIntegrityError(f"{mp} lacks required fields {required}; rebuild the index with `lexret index`")
    rebuild = rebuild_command(meta, d)
    if meta["format"] not in READABLE_FORMATS:
        raise IndexIntegrityError(
            f"{d} has index format {meta['format']!r}, this lexret reads {' and '.join(map(repr, READABLE_FORMATS))}; "
            f"rebuild it with {rebuild}"
        )
    engine = engine_of(meta)
    if engine not in ENGINES:
        raise IndexIntegrityError(
            f"{d} holds an index of engine {engine!r}, this lexret knows {', '.join(ENGINES)}; rebuild it with "
            "`lexret index --engine ENGINE`"
        )
    if engine == "lucene" and "lucene_ids" not in meta:
        raise IndexIntegrityError(f"{mp} lacks the field lucene_ids; rebuild the index with {rebuild}")
    if verify_files:
        present = lucene_files(d)
        what = "Lucene" if engine == "lucene" else engine.capitalize()
        for name, size in meta["files"].items():
            if name not in present:
                raise IndexIntegrityError(f"{what} file {name} is missing from {d}; rebuild it with {rebuild}")
            if present[name] != size:
                raise IndexIntegrityError(
                    f"{what} file {name} in {d} has {present[name]} bytes, {size} when built (truncated or "
                    f"altered); rebuild it with {rebuild}"
                )
    return meta


@dataclass(frozen=True)
class QuerySpec:
    """What the query side was encoded with; ``None`` fields are not checked."""

    model_id: str | None = None
    vocab_hash: str | None = None
    scale: float | None = None


REBUILD_INDEX = "`lexret index --vectors DOCS --out INDEX --scale S`"


def check_compatible(
    meta: dict[str, Any], spec: QuerySpec, index_dir: str | Path, *, rebuild: str = REBUILD_INDEX
) -> None:
    """Refuse queries encoded differently from the index, naming the fix (``rebuild``: the command
    that rebuilds the index)."""
    problems = []
    if spec.model_id is not None and meta.get("model_id") not in (None, UNKNOWN_MODEL, spec.model_id):
        problems.append(f"model {meta['model_id']!r} built the index, the queries come from {spec.model_id!r}")
    if spec.vocab_hash is not None and meta["vocab_hash"] != spec.vocab_hash:
        problems.append(f"index vocabulary {meta['vocab_hash']}, query vocabulary {spec.vocab_hash}")
    scale = meta["quantization"].get("scale")
    if spec.scale is not None and scale is not None and float(spec.scale) != float(scale):
        problems.append(f"index quantized with scale {scale}, queries with scale {spec.scale}")
    if problems:
        raise IndexMismatchError(
            f"index {index_dir} does not match the queries: "
            + "; ".join(problems)
            + f". Rebuild the index from documents encoded by the query model ({rebuild}) or encode the "
            "queries with the model, vocabulary and scale recorded in the index's metadata (lexret.json)."
        )
