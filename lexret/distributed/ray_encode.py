"""``lexret encode --ray``: the items are cut into parts of whole batches; Ray Data hands the parts to
actors that each load the model once and write ``DIR/part-NNNNN.npz``; the driver writes the
manifest ``DIR/lexret-vectors.json`` last (:mod:`lexret.vector_parts`).

A part is encoded by the code plain ``lexret encode`` runs on a chunk
(:mod:`lexret.encode_chunks`), in the same batches (parts start on a batch boundary) with the same
torch thread count, so every item gets the vector ``lexret encode`` gives it, bit for bit. Parts are
written atomically: a killed job keeps the parts it finished, and ``--resume`` encodes only the
others (with the first run's batch size, part size and thread count).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lexret.errors import InputError, LexretError
from lexret.fileio import write_json
from lexret.vector_parts import FORMAT, JOB_FILE, MANIFEST, PART, write_part

log = logging.getLogger(__name__)

PART_GLOB = "part-*.npz"


@dataclass
class EncodeJob:
    """What to encode and how; ``files``/``lines`` for images, ``texts`` for texts."""

    out: str
    side: str
    ids: list[str]
    fingerprint: dict[str, Any]
    meta: dict[str, Any]  # the model's metadata, side and top-k: written into every part and the manifest
    model: str | None
    top_k: int
    batch_size: int
    part_size: int
    threads: int
    on_error: str = "stop"
    files: list[str] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)
    listed_in: str | None = None
    texts: list[str] = field(default_factory=list)
    documents: bool = False  # texts as documents (SparseEncoder.encode_text_documents)

    def parts(self) -> list[tuple[int, int, int]]:
        return [(i, a, min(a + self.part_size, len(self.ids))) for i, a in enumerate(range(0, len(self.ids),
                                                                                          self.part_size))]  # fmt: skip

    def settings(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "batch_size": self.batch_size, "part_size": self.part_size,
                "threads": self.threads}  # fmt: skip


class PartEncoder:
    """A Ray Data actor: loads the model once, then encodes and writes whole parts."""

    def __init__(self, job: EncodeJob) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        from lexret.encoders import SparseEncoder

        self.job = job
        self.enc = SparseEncoder.from_pretrained(job.model)
        torch.set_num_threads(job.threads)  # as the plain encode computed: threads can change the last bits

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"part": [], "items": [], "rows": [], "error": []}
        for i, a, b in zip(rows["part"].tolist(), rows["first"].tolist(), rows["end"].tolist()):
            try:
                n = self._encode(i, a, b)
                error = ""
            except InputError as e:  # --on-error stop: reported by the driver, finished parts are kept
                n, error = 0, str(e)
            for k, v in (("part", i), ("items", b - a), ("rows", n), ("error", error)):
                out[k].append(v)
        return out

    def _encode(self, i: int, a: int, b: int) -> int:
        from lexret.encode_chunks import encode_image_chunk, encode_text_chunk

        job, skipped, truncated = self.job, [], []
        if job.side == "text":
            batch, cut = encode_text_chunk(self.enc, job.texts[a:b], job.top_k, job.batch_size, job.documents)
            ids, truncated = job.ids[a:b], [job.ids[a + j] for j in cut]
        else:
            ids, batch, skipped = encode_image_chunk(
                self.enc, job.ids[a:b], job.files[a:b], job.listed_in, job.lines[a:b], job.top_k, job.batch_size,
                job.on_error,
            )  # fmt: skip
        meta = {**job.meta, "part": i, "first": a, "items": b - a, "skipped": skipped, "truncated": truncated}
        write_part(Path(job.out) / PART.format(i), ids, batch, meta)
        return len(ids)


def _prepare_out(job: EncodeJob, resume: bool) -> EncodeJob:
    """Create or check ``DIR``; with ``resume``, continue with the interrupted job's settings."""
    out = Path(job.out)
    if out.exists() and not out.is_dir():
        raise LexretError(f"--out {out} is a file; with --ray, --out names a folder for the vector parts")
    out.mkdir(parents=True, exist_ok=True)
    ours = {MANIFEST, JOB_FILE}
    strangers = [p.name for p in out.iterdir() if p.name not in ours and not p.match(PART_GLOB)
                 and not p.name.startswith(".part-")]  # fmt: skip
    if strangers:
        raise LexretError(f"--out {out} holds other files ({', '.join(sorted(strangers)[:5])}); choose an empty folder")
    jf = out / JOB_FILE
    old = json.loads(jf.read_text(encoding="utf-8")) if jf.is_file() else None
    if resume and old is not None:
        fp = job.fingerprint
        diff = [k for k in sorted(set(fp) | set(old["fingerprint"])) if fp.get(k) != old["fingerprint"].get(k)]
        if diff:
            what = "; ".join(f"{k}: {old['fingerprint'].get(k)!r} then, {fp.get(k)!r} now" for k in diff)
            raise LexretError(
                f"cannot resume {out}: the unfinished job had other input or settings ({what}); "
                "rerun with the same input and settings, or without --resume to start over"
            )
        job.batch_size, job.part_size, job.threads = old["batch_size"], old["part_size"], old["threads"]
        return job
    if resume:
        log.warning("%s: no unfinished job to resume; starting from the beginning", out)
    leftovers = sorted(out.glob(PART_GLOB))
    if leftovers or (out / MANIFEST).exists():
        log.warning("%s: replacing %d parts of an earlier job (pass --resume to continue an unfinished one)",
                    out, len(leftovers))  # fmt: skip
    (out / MANIFEST).unlink(missing_ok=True)
    for p in leftovers:
        p.unlink()
    write_json(jf, job.settings())
    return job


def _write_manifest(job: EncodeJob) -> dict[str, Any]:
    out = Path(job.out)
    parts, skipped, truncated = [], [], []
    for i, a, b in job.parts():
        name = PART.format(i)
        with np.load(out / name, allow_pickle=False) as z:
            meta, rows = json.loads(str(z["meta"])), len(z["ids"])
        parts.append({"name": name, "first": a, "items": b - a, "rows": rows})
        skipped += meta.get("skipped", [])
        truncated += meta.get("truncated", [])
    manifest = {
        **job.meta, "format": FORMAT, "items": len(job.ids), "count": sum(p["rows"] for p in parts),
        "batch_size": job.batch_size, "part_size": job.part_size, "threads": job.threads,
        "fingerprint": job.fingerprint, "parts": parts, "skipped": skipped, "truncated": len(truncated),
    }  # fmt: skip
    write_json(out / MANIFEST, manifest)  # last: the folder is complete
    (out / JOB_FILE).unlink(missing_ok=True)
    return manifest


def run_ray_encode(job: EncodeJob, ray_spec: str, *, resume: bool, workers: int, cpus_per_worker: float) -> dict:
    """Encode ``job`` on Ray; returns the manifest."""
    from lexret.distributed.cluster import connect

    job = _prepare_out(job, resume)
    out = Path(job.out)
    todo = [(i, a, b) for i, a, b in job.parts() if not (out / PART.format(i)).is_file()]
    done_items = len(job.ids) - sum(b - a for _, a, b in todo)
    if done_items:
        log.info("resuming %s: %d of %d parts (%d items) were done", out, len(job.parts()) - len(todo),
                 len(job.parts()), done_items)  # fmt: skip
    if todo:
        with connect(ray_spec) as ray:
            ray.data.DataContext.get_current().enable_progress_bars = False  # lexret shows its own
            ds = ray.data.from_items([{"part": i, "first": a, "end": b} for i, a, b in todo])
            ds = ds.map_batches(
                PartEncoder, fn_constructor_args=(job,), batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(todo)))), num_cpus=cpus_per_worker,
            )  # fmt: skip
            unit = "image" if job.side == "image" else "text"
            with tqdm(total=len(job.ids), initial=done_items, unit=unit, desc=f"encoding {unit}s (Ray)") as bar:
                for row in ds.iter_rows():
                    if row["error"]:
                        raise InputError(str(row["error"]))
                    bar.update(int(row["items"]))
    manifest = _write_manifest(job)
    if manifest["skipped"]:
        log.warning("skipped %d unreadable images:", len(manifest["skipped"]))
        for docid, reason in manifest["skipped"][:50]:
            log.warning("  %s: %s", docid, reason)
    if manifest["truncated"]:
        log.warning("%d texts were longer than the model reads and were truncated", manifest["truncated"])
    if not manifest["count"]:
        raise InputError(f"none of the {len(job.ids)} items could be encoded; see the messages above", path=job.out)
    return manifest

