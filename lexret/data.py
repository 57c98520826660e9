"""Caption collections: a JSONL file of ``{"image": ..., "captions": [...], "split": ...}`` lines.

Image paths are relative to the folder of the JSONL file (absolute paths are kept). This is the
Flickr8k form of ``../shared/flickr8k/captions.jsonl`` and the form of user collections.

Bad input (a line that is not JSON, lacks ``image`` or ``captions``, an empty caption, a missing,
unreadable, truncated or non-image file) raises :class:`~lexret.errors.InputError` naming the
file and line with ``on_error="stop"``; with ``on_error="skip"`` the item is left out, recorded in
:attr:`Collection.skipped` and reported in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from lexret.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]

IMAGE_SIZE = 224
# EfficientNet-Lite was trained (in TensorFlow) on (x - 127) / 128 pixels, not on ImageNet mean/std:
# on Flickr8k a linear probe of pooled Lite0 features gains ~30 RSUM with its own normalisation.
PIXEL_MEAN = np.array([127.0, 127.0, 127.0], dtype=np.float32)
PIXEL_STD = np.array([128.0, 128.0, 128.0], dtype=np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Item:
    """One image and its captions. ``line`` is the 1-based line of the JSONL file."""

    image: Path
    captions: tuple[str, ...]
    split: str | None = None
    key: str = ""
    line: int = 0


@dataclass
class Collection:
    """Items read from one file, and what was skipped (``(line, reason)``)."""

    path: Path
    items: list[Item]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def captions(self) -> list[str]:
        """All captions, item by item (``caption_owner`` gives the item of each)."""
        return [c for it in self.items for c in it.captions]

    @property
    def caption_owner(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.items)), [len(it.captions) for it in self.items])


def _report(path: Path, skipped: Sequence[tuple[int, str]], what: str = "items") -> None:
    if not skipped:
        return
    log.warning("%s: skipped %d bad %s:", path, len(skipped), what)
    for line, reason in skipped[:20]:
        log.warning("  line %d: %s", line, reason)
    if len(skipped) > 20:
        log.warning("  ... and %d more", len(skipped) - 20)


def _parse_item(obj: object, n: int, path: Path) -> Item:
    spath = str(path)
    if not isinstance(obj, dict):
        raise InputError('each line must be a JSON object {"image": ..., "captions": [...]}', path=spath, line=n)
    missing = [k for k in ("image", "captions") if k not in obj]
    if missing:
        raise InputError(f"missing field {', '.join(repr(m) for m in missing)}", path=spath, line=n)
    image = obj["image"]
    if not isinstance(image, str) or not image.strip():
        raise InputError(f"'image' must be a non-empty path string, got {image!r}", path=spath, line=n)
    caps = obj["captions"]
    if isinstance(caps, str):
        caps = [caps]
    if not isinstance(caps, list) or not caps:
        raise InputError("'captions' must be a non-empty list of strings", path=spath, line=n)
    for j, c in enumerate(caps):
        if not isinstance(c, str) or not c.strip():
            raise InputError(f"caption {j + 1} is empty or not a string ({c!r})", path=spath, line=n)
    split = obj.get("split")
    img = Path(image)
    if not img.is_absolute():
        img = path.parent / img
    return Item(img, tuple(c.strip() for c in caps), None if split is None else str(split), image, n)


def load_captions(
    path: str | Path,
    *,
    split: str | Iterable[str] | None = None,
    on_error: OnError = "stop",
    check_images: bool = True,
    limit: int | None = None,
) -> Collection:
    """Read a captions JSONL file.

    ``split`` keeps only items of that split (or those splits). ``check_images`` checks that each
    image file exists (cheap); decoding errors are found by :func:`load_image`.
    """
    p = Path(path)
    if p.is_dir():
        cand = p / "captions.jsonl"
        if not cand.is_file():
            raise InputError("is a directory without captions.jsonl; pass a captions JSONL file", path=str(p))
        p = cand
    if not p.is_file():
        raise InputError("captions file not found", path=str(p))
    splits = None if split is None else ({split} if isinstance(split, str) else set(split))
    items: list[Item] = []
    skipped: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    try:
        f = p.open(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path=str(p)) from None
    with f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"not valid JSON ({e.msg})", path=str(p), line=n) from None
                item = _parse_item(obj, n, p)
                if splits is not None and item.split not in splits:
                    continue
                if item.key in seen:
                    raise InputError(f"image {item.key!r} already listed on line {seen[item.key]}", path=str(p), line=n)
                if check_images and not item.image.is_file():
                    raise InputError(f"image file {item.image} not found", path=str(p), line=n)
            except InputError as e:
                if on_error == "stop":
                    raise
                skipped.append((n, str(e)))
                continue
            seen[item.key] = n
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
    _report(p, skipped)
    if not items:
        what = f" of split {sorted(splits)}" if splits else ""
        raise InputError(f"no usable items{what}", path=str(p))
    return Collection(p, items, skipped)


def load_image(src: str | Path | Image.Image, *, path: str | None = None, line: int | None = None) -> Image.Image:
    """Open an image fully (truncated files raise), converted to RGB."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, Image.Image):
        img = src
    else:
        p = Path(src)
        where = path or str(p)
        if not p.is_file():
            raise InputError(f"image file {p} not found", path=where, line=line)
        try:
            img = Image.open(p)
            img.load()
        except UnidentifiedImageError:
            raise InputError(f"{p} is not an image PIL can read", path=where, line=line) from None
        except OSError as e:
            raise InputError(f"{p} is truncated or unreadable ({e})", path=where, line=line) from None
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def preprocess_image(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize the short side to ``size`` (bicubic), centre-crop, normalise as EfficientNet-Lite expects
    (``(x - 127) / 128``): ``(3, size, size)`` float32."""
    from PIL import Image

    w, h = img.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        img = img.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    x = (np.asarray(img, dtype=np.float32) - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("image folder not found", path=str(root))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found", path=str(root))
    return files


def read_texts(path: str | Path, *, on_error: OnError = "stop") -> tuple[list[str], list[str]]:
    """Texts to encode: a ``.jsonl`` file of ``{"id"?: ..., "text": ...}`` lines (``id`` defaults
    to the line number) or a plain file with one text a line (id = line number)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("texts file not found", path=str(p))
    ids: list[str] = []
    texts: list[str] = []
    skipped: list[tuple[int, str]] = []
    is_jsonl = p.suffix.lower() in (".jsonl", ".json")
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                if is_jsonl:
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"not valid JSON ({e.msg})", path=str(p), line=n) from None
                    if not isinstance(obj, dict):
                        raise InputError('each line must be an object {"id": ..., "text": ...}', path=str(p), line=n)
                    text = obj.get("text", obj.get("query", obj.get("caption")))
                    if not isinstance(text, str) or not text.strip():
                        raise InputError("missing or empty 'text'", path=str(p), line=n)
                    tid = str(obj.get("id", n))
                else:
                    text, tid = line.strip(), str(n)
            except InputError as e:
                if on_error == "stop":
                    raise
                skipped.append((n, str(e)))
                continue
            ids.append(tid)
            texts.append(text.strip())
    _report(p, skipped, "texts")
    if not texts:
        raise InputError("no texts to encode", path=str(p))
    return ids, texts
