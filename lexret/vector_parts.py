"""A folder of vector parts, as ``lexret encode --ray`` writes it:

``DIR/part-00000.npz``, ... (each a lexret ``.npz`` vector file) and ``DIR/lexret-vectors.json``,
the manifest (model id, vocabulary hash, the parts in order with their item and vector counts).
The manifest is written last: a folder without one is an unfinished job (``--resume`` continues
it), never read as vectors. Everything that reads a vector file (``index``, ``search``,
``milvus load``) reads such a folder as the concatenation of its parts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lexret.errors import InputError
from lexret.fileio import atomic_write
from lexret.types import SparseBatch

MANIFEST = "lexret-vectors.json"
JOB_FILE = ".lexret-job.json"  # the running job's settings, for --resume
PART = "part-{:05d}.npz"
FORMAT = "lexret-vectors/1"


def is_vector_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    mp = p / MANIFEST
    if not mp.is_file():
        raise InputError(
            f"is a directory without {MANIFEST}: not a finished `lexret encode --ray` output (rerun that "
            "with --resume), nor a .jsonl or .npz vector file",
            path=str(p),
        )
    try:
        manifest = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable manifest ({e}); rerun `lexret encode --ray`", path=str(mp)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "parts" not in manifest:
        raise InputError(f"not a {FORMAT} manifest; rerun `lexret encode --ray`", path=str(mp))
    return manifest


def part_paths(path: str | Path, manifest: dict[str, Any]) -> list[Path]:
    """The part files in order; a missing one is an error naming it."""
    out = []
    for part in manifest["parts"]:
        f = Path(path) / part["name"]
        if not f.is_file():
            raise InputError(f"part {part['name']} listed in {MANIFEST} is missing; rerun `lexret encode --ray`",
                             path=str(path))  # fmt: skip
        out.append(f)
    return out


def write_part(path: Path, ids: list[str], batch: SparseBatch, meta: dict[str, Any]) -> None:
    """One part, in the ``.npz`` form :func:`lexret.vectors.write_vectors` writes, atomically."""
    with atomic_write(path, "wb") as f:
        np.savez(
            f, ids=np.array(ids, dtype=str), indptr=batch.indptr, indices=batch.indices, values=batch.values,
            dim=np.array(batch.dim), meta=np.array(json.dumps(meta)),
        )  # fmt: skip
