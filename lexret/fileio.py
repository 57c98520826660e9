"""Atomic file writing: the final name appears only once the content is complete."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block succeeds.

    ``fsync`` forces the content to disk before the rename (for records that must survive a crash
    of the machine, not only of the process)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any, *, fsync: bool = False) -> None:
    with atomic_write(path, fsync=fsync) as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def save_arrays(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Numpy arrays to one safetensors file (a checkpoint part: query map, term scales, DF cap)."""
    from safetensors.numpy import save_file

    save_file(arrays, str(path))
    return Path(path)


def load_arrays(path: str | Path, keys: set[str], missing: str) -> dict[str, Any]:
    """The arrays of a safetensors file written by :func:`save_arrays`; ``LexretError`` naming ``missing``
    (what the file is and how to make it) if the file is absent, or if it lacks one of ``keys``."""
    from safetensors.numpy import load_file

    from lexret.errors import LexretError

    path = Path(path)
    if not path.is_file():
        raise LexretError(f"{path} is missing: {missing}")
    arrays = load_file(str(path))
    lacking = keys - set(arrays)
    if lacking:
        raise LexretError(f"{path} lacks {sorted(lacking)}; the checkpoint folder is damaged")
    return arrays
