"""Caption collections in the Hugging Face ``datasets`` form: the only module that imports ``datasets``.

Accepted wherever ``--data`` (or ``encode --images``) takes a captions JSONL:

- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (a ``DatasetDict``'s
  split names are the splits);
- a ``.parquet`` or ``.arrow`` file, or a folder of them.

A row needs an image column (:data:`IMAGE_COLUMNS`; a decoded ``Image`` feature, its
``{"bytes", "path"}`` form, or a path string relative to the data file's folder) and a captions
column (:data:`CAPTION_COLUMNS`; a list of strings or one string); a ``split`` column, if present,
is the split. Images stored inside the dataset are written once, under their own file names, to a
cache folder (``$LEXRET_IMAGE_CACHE``, default ``~/.cache/lexret/images``) keyed by the dataset's
fingerprint, so that every lexret stage reads them as files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from lexret.errors import InputError

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "img", "image_path", "file_name", "filepath")
CAPTION_COLUMNS = ("captions", "caption", "sentences", "text")
SPLIT_COLUMN = "split"
DATA_SUFFIXES = (".parquet", ".arrow")
SAVE_TO_DISK_MARKERS = ("state.json", "dataset_dict.json")
CACHE_ENV = "LEXRET_IMAGE_CACHE"
KEY = "_lexret_key"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def is_hf_dataset(path: str | Path) -> bool:
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() in DATA_SUFFIXES
    if not p.is_dir() or (p / "captions.jsonl").is_file():
        return False
    return any((p / m).is_file() for m in SAVE_TO_DISK_MARKERS) or any(
        f.suffix.lower() in DATA_SUFFIXES for f in p.iterdir()
    )


def _load(p: Path) -> dict[str | None, Any]:
    """``{split: Dataset}`` (``None``: a dataset without named splits)."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if p.is_dir() and any((p / m).is_file() for m in SAVE_TO_DISK_MARKERS):
            ds = datasets.load_from_disk(str(p))
        else:
            files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix.lower() in DATA_SUFFIXES)
            kind = "parquet" if files[0].suffix.lower() == ".parquet" else "arrow"
            ds = datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    except Exception as e:  # datasets raises many kinds
        raise InputError(f"cannot read as a Hugging Face dataset ({type(e).__name__}: {e})", path=str(p)) from None
    if isinstance(ds, datasets.DatasetDict):
        return dict(ds)
    return {None: ds}


def _column(ds, names: tuple[str, ...], what: str, p: Path) -> str:
    for n in names:
        if n in ds.column_names:
            return n
    raise InputError(
        f"has no {what} column (one of {', '.join(names)}); its columns are {', '.join(ds.column_names)}", path=str(p)
    )


def _cache_dir(p: Path, fingerprint: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lexret" / "images")
    key = hashlib.sha256(f"{p.resolve()}\0{fingerprint}".encode()).hexdigest()[:16]
    return root / key


def load_rows(path: str | Path, splits: set[str] | None) -> list[tuple[int, dict[str, Any]]]:
    """``(row number, {"image", "captions", "split", KEY})`` per row, in the JSONL item form that
    :func:`lexret.data.load_captions` parses (image files absolute; ``KEY``: the image's id)."""
    import datasets

    p = Path(path)
    base = p if p.is_dir() else p.parent
    rows: list[tuple[int, dict[str, Any]]] = []
    n = 0
    for split_name, ds in _load(p).items():
        img_col = _column(ds, IMAGE_COLUMNS, "image", p)
        cap_col = _column(ds, CAPTION_COLUMNS, "captions", p)
        if isinstance(ds.features[img_col], datasets.Image):
            ds = ds.cast_column(img_col, datasets.Image(decode=False))
        has_split = SPLIT_COLUMN in ds.column_names
        cache = _cache_dir(p, f"{split_name}:{ds._fingerprint}")
        for i, row in enumerate(ds):
            n += 1
            split = row[SPLIT_COLUMN] if has_split else split_name
            if splits is not None and split not in splits:
                continue
            key, file = _image_file(row[img_col], i, base, cache)
            rows.append((n, {"image": file, "captions": row[cap_col], "split": split, KEY: key}))
    return rows


def _image_file(value: Any, i: int, base: Path, cache: Path) -> tuple[Any, Any]:
    """The row's image id and file: a path as given (relative to ``base``), or the stored bytes written
    once into ``cache`` (id: the name they were stored under, else ``row-N``)."""
    if isinstance(value, str):
        f = Path(value)
        return value, str(f if f.is_absolute() else base / f)
    if isinstance(value, dict) and value.get("bytes"):
        key = Path(value.get("path") or "").name or f"row-{i:08d}"
        f = cache / f"{i:08d}-{_SAFE.sub('_', key)}"  # the row number keeps equal names of different rows apart
        if not f.is_file():
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f".{f.name}.tmp-{os.getpid()}")
            tmp.write_bytes(value["bytes"])
            os.replace(tmp, f)
        return key, str(f)
    if isinstance(value, dict) and value.get("path"):
        return _image_file(value["path"], i, base, cache)
    return value, value  # anything else is refused by the item parser, with the row's number
