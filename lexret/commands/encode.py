"""``lexret encode``: images (a folder or a captions JSONL) or texts -> a sparse vector file.

The job streams: items are encoded chunk by chunk and each finished chunk is appended to a partial
file beside the output, with a progress record (see :mod:`lexret.partial`). The output appears under
its final name only when complete; ``--resume`` continues an interrupted job. Chunks are whole
batches, so a resumed job gives the same vectors, byte for byte, as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lexret.commands._common import add_ray_flag

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1024
MAX_BATCH = 4096
MAX_CHUNK = 1_000_000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "encode",
        help="encode images or texts into sparse vectors (JSONL)",
        description="Encode with the sparse model (default: the shipped checkpoint). Image ids are paths "
        "relative to the folder or the JSONL's image values; text ids are line numbers or the 'id' field. "
        'An empty text (JSONL "text": "") gives an empty vector; texts longer than the model\'s '
        "48 wordpieces are truncated (and counted in the log). Interrupted jobs continue with --resume.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of images, or a captions JSONL whose 'image' entries are encoded")
    src.add_argument("--texts", help="a text file (one text a line) or JSONL of {'id', 'text'}")
    p.add_argument("--out", required=True, help="output vectors (.jsonl, or .npz)")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the shipped sparse model)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"items per forward pass, 1..{MAX_BATCH} (default 32 images / 64 texts)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"items encoded between two progress records, rounded up to whole batches (default {DEFAULT_CHUNK})",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted job writing --out")
    add_ray_flag(p, "encode on Ray: --out is then a folder of parts (part-00000.npz ...) and a manifest")
    p.add_argument("--workers", type=int, default=2, help="with --ray: encoding actors (each loads the model once)")
    p.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="with --ray: CPUs Ray reserves per actor (fractions allowed)"
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="terms kept per item (default: the model's; shipped: 48 per image, 32 per text)",
    )
    p.add_argument(
        "--as-documents", action="store_true",
        help="with --texts: encode them as documents of a text index (image->text search) rather than as "
        "queries; differs only for models trained with caption_documents: encoder",
    )  # fmt: skip
    p.add_argument("--split", default=None, help="with a captions JSONL: only items of this split")
    p.add_argument(
        "--on-error", choices=("stop", "skip"), default="stop", help="stop at the first bad item or skip and report"
    )
    p.set_defaults(func=run)


def _image_inputs(
    src: Path, split: str | None, on_error: str
) -> tuple[list[str], list[Path], str | None, list[int | None]]:
    """Ids, files, the list file they come from (``None`` for a folder) and each item's line in it."""
    from lexret.data import list_images, load_captions

    if src.is_dir():
        files = list_images(src)
        return [f.relative_to(src).as_posix() for f in files], files, None, [None] * len(files)
    coll = load_captions(src, split=split, on_error=on_error)
    items = coll.items
    return [it.key for it in items], [it.image for it in items], str(coll.path), [it.line for it in items]


def _check_args(args: argparse.Namespace) -> None:
    from lexret.encoders import encoder_threads
    from lexret.errors import LexretError
    from lexret.vocab import default_vocabulary

    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH:
        raise LexretError(f"--batch-size must be between 1 and {MAX_BATCH}, got {args.batch_size}")
    if not 1 <= args.chunk_size <= MAX_CHUNK:
        raise LexretError(f"--chunk-size must be between 1 and {MAX_CHUNK:,}, got {args.chunk_size}")
    if args.top_k is not None and not 1 <= args.top_k <= len(default_vocabulary()):
        raise LexretError(f"--top-k must be between 1 and the vocabulary size, got {args.top_k}")
    if args.as_documents and args.images:
        raise LexretError("--as-documents applies to --texts (texts as documents of a text index), not to --images")
    if args.ray:
        if args.workers < 1 or args.cpus_per_worker <= 0:
            raise LexretError("--workers must be at least 1 and --cpus-per-worker above 0")
        if Path(args.out).is_file():
            raise LexretError(f"--out {args.out} is a file; with --ray, --out names a folder for the vector parts")
    elif Path(args.out).is_dir():
        raise LexretError(f"--out {args.out} is a directory; give a file name ending in .jsonl or .npz")
    encoder_threads()  # a bad $LEXRET_THREADS is reported before any work


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexret.encoders import SparseEncoder
    from lexret.errors import InputError, LexretError
    from lexret.partial import PartialVectorFile, fingerprint
    from lexret.vectors import check_ids

    _check_args(args)
    texts: list[str] | None = None
    if args.images:
        ids, files, listed_in, lines = _image_inputs(Path(args.images), args.split, args.on_error)
        source = args.images
    else:
        from lexret.data import read_texts

        ids, texts = read_texts(args.texts, on_error=args.on_error)
        source = listed_in = args.texts
    check_ids(ids, len(ids), str(listed_in or source))  # unique and without whitespace, before any work
    enc = SparseEncoder.from_pretrained(args.model)
    import torch  # loaded with the encoder

    side = "image" if args.images else "text"
    documents = bool(args.as_documents) and enc.encoded_documents
    top_k = args.top_k or (enc.top_k_doc if args.images else enc.top_k_query)
    batch_size = args.batch_size or (32 if args.images else 64)
    chunk_size = -(-args.chunk_size // batch_size) * batch_size  # whole batches: resumed runs batch alike
    if chunk_size != args.chunk_size:
        log.info("chunk size rounded up to %d, a whole number of batches of %d", chunk_size, batch_size)
    fp = fingerprint(
        source=source, side=side, ids=ids, model_id=enc.model_id, top_k=top_k, vocab_hash=enc.vocab.hash,
        split=args.split if args.images else None, texts=texts, documents=documents,
    )  # fmt: skip
    meta = {**enc.metadata(), "side": side, "top_k": top_k}
    if documents:
        meta["text_role"] = "document"
    threads = torch.get_num_threads()
    if args.ray:
        return _run_on_ray(args, ids, files if texts is None else [], listed_in, lines if texts is None else [],
                           texts, fp, meta, top_k, batch_size, chunk_size, threads)  # fmt: skip
    with PartialVectorFile(
        args.out, fp, enc.vocab, batch_size=batch_size, chunk_size=chunk_size, threads=threads, resume=args.resume
    ) as out:
        torch.set_num_threads(out.state.threads or threads)  # a resumed job computes as it did before
        try:
            if texts is not None:
                _encode_texts(enc, out, ids, texts, top_k, documents)
            else:
                _encode_images(enc, out, ids, files, listed_in, lines, top_k, args.on_error)
        except (KeyboardInterrupt, LexretError):
            if out.state.done:
                log.warning(
                    "%d of %d items are done and kept in %s; rerun with --resume to continue",
                    out.state.done, len(ids), out.partial,
                )  # fmt: skip
            raise
        finally:
            torch.set_num_threads(threads)
        skipped = out.state.skipped
        if skipped:
            log.warning("skipped %d unreadable images:", len(skipped))
            for docid, reason in skipped[:50]:
                log.warning("  %s: %s", docid, reason)
            if len(skipped) > 50:
                log.warning("  ... and %d more", len(skipped) - 50)
        if not out.state.rows:
            raise InputError(f"none of the {len(ids)} items could be encoded; see the messages above", path=source)
        rows = out.state.rows
        out.finish(meta)
    log.info("wrote %d vectors to %s", rows, args.out)
    return 0


def _run_on_ray(args, ids, files, listed_in, lines, texts, fp, meta, top_k, batch_size, part_size, threads) -> int:
    from lexret.distributed.ray_encode import EncodeJob, run_ray_encode

    job = EncodeJob(
        out=args.out, side=meta["side"], ids=ids, fingerprint=fp, meta={**meta, "vocab_hash": fp["vocab_hash"]},
        model=args.model, top_k=top_k,
        batch_size=batch_size, part_size=part_size, threads=threads, on_error=args.on_error,
        files=[str(f) for f in files], lines=list(lines), listed_in=listed_in, texts=list(texts or []),
        documents=meta.get("text_role") == "document",
    )  # fmt: skip
    manifest = run_ray_encode(job, args.ray, resume=args.resume, workers=args.workers,
                              cpus_per_worker=args.cpus_per_worker)  # fmt: skip
    log.info("wrote %d vectors in %d parts to %s", manifest["count"], len(manifest["parts"]), args.out)
    return 0


def _progress(total: int, done: int, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit=unit, desc=f"encoding {unit}s", disable=total - done <= 0)


def _encode_texts(enc, out, ids: list[str], texts: list[str], top_k: int, documents: bool = False) -> None:
    from lexret.encode_chunks import encode_text_chunk

    s = out.state
    empty = [ids[i] for i in range(s.done, len(texts)) if not texts[i].strip()]
    if empty:
        log.warning(
            "%d empty texts give empty vectors (kept; they match nothing): %s%s",
            len(empty), ", ".join(empty[:10]), " ..." if len(empty) > 10 else "",
        )  # fmt: skip
    truncated: list[str] = []
    with _progress(len(texts), s.done, "text") as bar:
        for a in range(s.done, len(texts), s.chunk_size):
            chunk = texts[a : a + s.chunk_size]
            batch, cut = encode_text_chunk(enc, chunk, top_k, s.batch_size, documents)
            truncated += [ids[a + i] for i in cut]
            out.append(ids[a : a + len(chunk)], batch, done=a + len(chunk))
            bar.update(len(chunk))
    if truncated:
        n = enc.max_text_len
        log.warning(
            "%d texts are longer than %d wordpieces; only their first %d were encoded: %s%s",
            len(truncated), n, n - 2, ", ".join(truncated[:10]), " ..." if len(truncated) > 10 else "",
        )  # fmt: skip


def _encode_images(
    enc, out, ids: list[str], files: list[Path], listed_in: str | None, lines: list, top_k: int, on_error: str
) -> None:
    """Encode chunk by chunk (see :func:`lexret.encode_chunks.encode_image_chunk`); a bad image stops
    the job (``stop``: the chunks before it are kept for --resume) or is skipped and recorded."""
    from lexret.encode_chunks import encode_image_chunk

    s = out.state
    n = len(ids)
    with _progress(n, s.done, "image") as bar:
        for a in range(s.done, n, s.chunk_size):
            end = min(a + s.chunk_size, n)
            chunk_ids, batch, skipped = encode_image_chunk(
                enc, ids[a:end], files[a:end], listed_in, lines[a:end], top_k, s.batch_size, on_error
            )
            out.append(chunk_ids, batch, done=end, skipped=skipped)
            bar.update(end - a)
