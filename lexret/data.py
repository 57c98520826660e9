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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from lexret.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]

IMAGE_SIZE = 224  # input of the default image backbone (Lite0); see lexret.model.backbones.IMAGE_BACKBONES
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
    """Read a captions JSONL file, or a Hugging Face dataset with image and captions columns
    (a ``save_to_disk`` folder, ``.parquet`` or ``.arrow`` files: :mod:`lexret.hf_data`).

    ``split`` keeps only items of that split (or those splits). ``check_images`` checks that each
    image file exists (cheap); decoding errors are found by :func:`load_image`.
    """
    from lexret.hf_data import KEY, is_hf_dataset, load_rows

    p = Path(path)
    splits = None if split is None else ({split} if isinstance(split, str) else set(split))
    hf = is_hf_dataset(p)
    if hf:
        records = load_rows(p, splits)
    else:
        p = _captions_file(p)
        records = _jsonl_lines(p)
    items: list[Item] = []
    skipped: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    what = "row" if hf else "line"
    for n, record in records:
        try:
            if isinstance(record, str):
                try:
                    record = json.loads(record)
                except json.JSONDecodeError as e:
                    raise InputError(f"not valid JSON ({e.msg})", path=str(p), line=n) from None
            item = _parse_item(record, n, p)
            if hf:
                item = replace(item, key=record[KEY])
            if splits is not None and item.split not in splits:
                continue
            if item.key in seen:
                raise InputError(f"image {item.key!r} already listed on {what} {seen[item.key]}", path=str(p), line=n)
            if check_images and not item.image.is_file():
                kind = "is a directory, not an image file" if item.image.is_dir() else "not found"
                raise InputError(f"image file {item.image} {kind}; fix the path", path=str(p), line=n)
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


def _captions_file(p: Path) -> Path:
    if p.is_dir():
        cand = p / "captions.jsonl"
        if not cand.is_file():
            raise InputError(
                "is a directory without captions.jsonl (nor a Hugging Face dataset); pass a captions JSONL file",
                path=str(p),
            )
        p = cand
    if not p.is_file():
        raise InputError("captions file not found", path=str(p))
    return p


def _jsonl_lines(p: Path) -> Iterator[tuple[int, str]]:
    try:
        f = p.open(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path=str(p)) from None
    with f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield n, line


def load_image(
    src: str | Path | Image.Image, *, path: str | None = None, line: int | None = None, size: int | None = IMAGE_SIZE
) -> Image.Image:
    """Decode an image fully (truncated files raise) and return it upright, in RGB.

    What is done to hostile or unusual files (each failure is an :class:`InputError` that names the
    image, and ``path``/``line`` of the list it came from when given):

    - a missing path, a directory, an empty file, a non-image or a truncated file is refused;
    - more than :data:`MAX_IMAGE_PIXELS` pixels is refused before decoding (decompression bombs);
    - with ``size`` set, an image whose short side is at least ``REDUCE_FACTOR * size`` is reduced
      while decoding (JPEG: DCT scaling via ``Image.draft``; others: ``Image.reduce``) to a short side
      of at least ``2 * size``, so memory stays bounded; smaller images are decoded as they are;
    - the EXIF orientation tag is applied (``ImageOps.exif_transpose``);
    - transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited on white;
      16-bit greyscale (``I;16``, or ``I`` with values above 255) is scaled from 0-65535 to 0-255;
      every other mode (CMYK, P, 1, L, ...) goes through PIL's conversion to RGB.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    own = not isinstance(src, Image.Image)
    name = str(src) if own else ""

    def fail(what: str) -> InputError:
        """``FILE: what``, or ``LIST:LINE: image FILE what`` when the image came from a list."""
        if path is not None:
            return InputError(f"image {name} {what}" if name else f"image {what}", path=path, line=line)
        return InputError(what, path=name) if name else InputError(f"image {what}")

    if not own:
        img = src
    else:
        p = Path(src)
        if p.is_dir():
            raise fail("is a directory, not an image file; list image files only")
        if not p.is_file():
            raise fail("not found; check the path")
        if p.stat().st_size == 0:
            raise fail("is an empty file (0 bytes); replace or remove it")
        try:
            with warnings.catch_warnings():  # lexret applies its own bound below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(p)
        except Image.DecompressionBombError as e:
            raise fail(f"is too large to decode ({e}); downscale it") from None
        except UnidentifiedImageError:
            raise fail("is not an image PIL can read; replace it with a JPEG or PNG or remove it") from None
        except OSError as e:
            raise fail(f"is truncated or unreadable ({e}); re-download or re-export it") from None
        except Exception as e:  # PIL raises ValueError, SyntaxError, struct.error ... on damaged headers
            raise fail(f"has a damaged header ({type(e).__name__}: {e}); re-export it as JPEG or PNG") from None
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise fail(
            f"is {w}x{h} = {w * h:,} pixels, more than the {MAX_IMAGE_PIXELS:,} lexret decodes "
            "(a bound against decompression bombs); downscale it"
        )
    try:
        if own and size and img.format == "JPEG" and min(w, h) >= REDUCE_FACTOR * size:
            img.draft(None, (2 * size, 2 * size))  # decode at 1/2, 1/4 or 1/8 scale: never the full bitmap
        img.load()
        img = _upright(img)
        if size and min(img.size) >= REDUCE_FACTOR * size:
            if img.mode in _NO_REDUCE:
                img = _to_rgb(img)
            img = img.reduce(min(img.size) // (2 * size))
        return _to_rgb(img)
    except OSError as e:
        raise fail(f"is truncated or unreadable ({e}); re-download or re-export it") from None
    except Exception as e:
        raise fail(f"cannot be decoded ({type(e).__name__}: {e}); re-export it as JPEG or PNG") from None


MAX_IMAGE_PIXELS = 100_000_000  # 10,000 x 10,000: larger images are refused before decoding
REDUCE_FACTOR = 4  # short side >= 4 x the model input (896 px): reduced while decoding
_NO_REDUCE = ("1", "P", "I;16", "I;16L", "I;16B", "I;16N")  # Image.reduce does not take them
WHITE = (255, 255, 255)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (a damaged EXIF block is ignored, with a debug message)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception as e:  # malformed EXIF: keep the pixels as stored
        log.debug("ignoring unreadable EXIF orientation (%s)", e)
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white and 16-bit greyscale scaled to 8 bits."""
    from PIL import Image

    if img.mode == "RGB" and not img.has_transparency_data:
        return img
    if img.mode.startswith("I"):  # I;16, I;16B, ..., I
        arr = np.asarray(img)
        if img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = np.rint(np.clip(arr, 0, 65535) / 257.0)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.has_transparency_data:
        bg = Image.new("RGBA", img.size, (*WHITE, 255))
        bg.alpha_composite(img.convert("RGBA"))
        return bg.convert("RGB")
    return img.convert("RGB")


def preprocess_image(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize the short side to ``size`` (bicubic), centre-crop, normalise as EfficientNet-Lite expects
    (``(x - 127) / 128``): ``(3, size, size)`` float32.

    An image with an aspect ratio beyond 16:1 (a 10,000 x 1 strip) is cropped to its centre square
    before resizing, so the intermediate image stays small."""
    from PIL import Image

    w, h = img.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        if nw * nh > 16 * size * size:
            side = min(w, h)
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            img = img.resize((size, size), Image.BICUBIC, box=box)
        else:
            img = img.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
    if img.mode != "RGB":
        img = _to_rgb(img)
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
    to the line number) or a plain file with one text a line (id = line number).

    Texts are stripped. In JSONL an empty or whitespace-only ``"text"`` is kept (it encodes to an
    empty vector); in a plain file blank lines separate nothing and are left out (ids stay line
    numbers). A line without a text string is an error."""
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
                    if not isinstance(text, str):
                        what = "missing" if text is None else f"not a string ({type(text).__name__})"
                        raise InputError(f"'text' is {what}", path=str(p), line=n)
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
