"""End-to-end evaluation of the sparse model (Lucene impact) against the dense baseline (FAISS).

The split's images and captions are encoded once (cached in the work folder), then for each
system the image collection is indexed for text->image search and the caption collection for
image->text search; every query runs, and effectiveness, index size, terms per item and latency
are reported. Search latency is measured in a child process per system (see ``lexret.measure``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lexret.data import Collection
from lexret.fileio import write_json
from lexret.metrics import evaluate, rsum
from lexret.text import content_wordpieces, is_content_term
from lexret.trec import Qrels, read_run
from lexret.types import SparseBatch
from lexret.vectors import write_vectors

if TYPE_CHECKING:
    from lexret.distributed.sharded_index import ShardedBuild

log = logging.getLogger(__name__)

T2I_METRICS = ("R@1", "R@5", "R@10", "MRR@10")
I2T_METRICS = ("R@1", "R@5", "R@10")


def item_id(key: str) -> str:
    """A whitespace-free id for an image key (run files are space separated)."""
    return "".join("%20" if c.isspace() else c for c in key)


@dataclass
class SplitIds:
    """Ids and relevance of an image-caption split: caption ``j`` of image ``i`` is ``<image>#j``."""

    image_ids: list[str]
    caption_ids: list[str]
    caption_owner: np.ndarray  # image row of each caption

    @classmethod
    def from_collection(cls, coll: Collection) -> SplitIds:
        image_ids = [item_id(it.key) for it in coll.items]
        caption_ids = [f"{image_ids[i]}#{j}" for i, it in enumerate(coll.items) for j in range(len(it.captions))]
        return cls(image_ids, caption_ids, coll.caption_owner)

    def qrels_t2i(self) -> Qrels:
        return {c: {self.image_ids[o]: 1} for c, o in zip(self.caption_ids, self.caption_owner)}

    def qrels_i2t(self) -> Qrels:
        q: Qrels = {i: {} for i in self.image_ids}
        for c, o in zip(self.caption_ids, self.caption_owner):
            q[self.image_ids[o]][c] = 1
        return q


def term_precision_at_10(images: SparseBatch, coll: Collection, vocab_tokens: list[str]) -> float:
    """Mean over images of the share (percent) of its top-10 content terms found among the content
    wordpieces of its own captions."""
    scores = []
    for i, item in enumerate(coll.items):
        idx, val = images.row(i)
        order = np.argsort(-val, kind="stable")
        top = [vocab_tokens[j] for j in idx[order] if is_content_term(vocab_tokens[j])][:10]
        if not top:
            scores.append(0.0)
            continue
        words = content_wordpieces(item.captions)
        scores.append(100.0 * sum(t in words for t in top) / len(top))
    return float(np.mean(scores)) if scores else 0.0


def per_query_encode_ms(encode_one, texts: list[str], n: int = 100) -> float:
    """Mean milliseconds to encode one text query, one at a time, on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sample = texts[:n]
        encode_one(sample[:5])  # warm-up
        t = time.perf_counter()
        for s in sample:
            encode_one([s])
        return 1000.0 * (time.perf_counter() - t) / len(sample)
    finally:
        torch.set_num_threads(threads)


def _both_directions(
    system: str, ids: SplitIds, image_index: Path, caption_index: Path, caption_queries: Path, image_queries: Path,
    k: int, work: Path, ray: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run t2i (captions over the image index) and i2t (images over the caption index), each in a
    measured child process; ``search_ms`` is the t2i latency per query at one thread."""
    from lexret.measure import measure_in_subprocess

    m_t2i, run_t2i = measure_in_subprocess(system, image_index, caption_queries, k, work / "t2i", ray=ray)
    _, run_i2t = measure_in_subprocess(system, caption_index, image_queries, k, work / "i2t", ray=ray)
    t2i = evaluate(read_run(run_t2i), ids.qrels_t2i(), T2I_METRICS)
    i2t = evaluate(read_run(run_i2t), ids.qrels_i2t(), I2T_METRICS)
    return {"t2i": t2i, "i2t": i2t, "rsum": rsum(t2i, i2t), "search_ms": m_t2i.latency_ms_mean}


def _build_sparse_index(
    ids: list[str],
    batch: SparseBatch,
    out: Path,
    vocab,
    cfg,
    info,
    sharded: ShardedBuild | None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Lucene index, or ``sharded.shards`` of them (Ray tasks with ``sharded.ray``)."""
    if sharded is None:
        from lexret.indexer import Indexer

        return Indexer(vocab, cfg).build([(ids, batch)], out, info, extra_meta=extra_meta)
    from lexret.distributed.sharded_index import build_sharded

    return build_sharded([(ids, batch)], out, vocab, sharded, cfg, info, total=len(ids), extra_meta=extra_meta)


def evaluate_sparse(
    ids: SplitIds,
    images: SparseBatch,
    captions: SparseBatch,
    *,
    vocab,
    model_id: str,
    work: Path,
    k: int = 10,
    scale: float | None = None,
    threads: int = 2,
    sharded: ShardedBuild | None = None,
    caption_documents: SparseBatch | None = None,
    caption_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Index images and captions in Lucene, run both directions, and measure. With ``sharded``, each
    index is ``sharded.shards`` shards (built as Ray tasks and searched by Ray actors with ``sharded.ray``),
    measured as ``sparse-lucene-sharded``: the merge is exact, the metrics are the single index's.
    ``caption_documents``: the captions as documents of the image->text index when the model encodes
    them otherwise than as queries (:meth:`lexret.encoders.SparseEncoder.encode_text_documents`, or with
    caption priors); default ``captions``. ``caption_meta``: extra metadata of the caption index (e.g.
    its ``query_prior``)."""
    from lexret.indexer import IndexConfig, IndexInfo
    from lexret.quantize import DEFAULT_SCALE

    docs = captions if caption_documents is None else caption_documents
    cfg = IndexConfig(scale=scale or DEFAULT_SCALE, threads=threads, store_vectors=False)
    suffix = "index" if sharded is None else "sharded"
    img_index, cap_index = work / f"sparse-images.{suffix}", work / f"sparse-captions.{suffix}"
    meta_i = _build_sparse_index(ids.image_ids, images, img_index, vocab, cfg, IndexInfo(model_id, "image"), sharded)
    meta_c = _build_sparse_index(ids.caption_ids, docs, cap_index, vocab, cfg, IndexInfo(model_id, "text"),
                                 sharded, caption_meta)  # fmt: skip
    q_caps, q_imgs = work / "sparse-caption-queries.npz", work / "sparse-image-queries.npz"
    write_vectors(q_caps, ids.caption_ids, captions, vocab, {"model_id": model_id})
    write_vectors(q_imgs, ids.image_ids, images, vocab, {"model_id": model_id})
    system, ray, extra = "sparse-lucene", None, {}
    if sharded is not None:
        system, extra = "sparse-lucene-sharded", {"shards": sharded.shards, "ray": sharded.ray}
        if sharded.ray:
            from lexret.distributed.cluster import address_for_children

            ray = address_for_children(sharded.ray)
    return {
        **_both_directions(system, ids, img_index, cap_index, q_caps, q_imgs, k, work, ray=ray),
        **extra,
        "index_bytes": meta_i["index_bytes"],
        "caption_index_bytes": meta_c["index_bytes"],
        "avg_doc_terms": float(images.terms_per_row().mean()),
        "avg_query_terms": float(captions.terms_per_row().mean()),
        "avg_caption_document_terms": float(docs.terms_per_row().mean()),
        **caption_query_postings(images, captions),
    }


def caption_query_postings(images: SparseBatch, captions: SparseBatch) -> dict[str, float]:
    """Postings a caption query reads in the image index (the sum of its terms' list lengths), and the
    same per 1M images at this collection's term shares (what ``lexret compare`` measures at 1M)."""
    per_query = captions.postings_per_row(images.document_frequency())
    mean = float(per_query.mean()) if len(per_query) else 0.0
    return {"postings_per_query": mean, "postings_per_query_per_1m": mean * 1e6 / max(len(images), 1)}


def evaluate_dense(
    ids: SplitIds, images: np.ndarray, captions: np.ndarray, *, work: Path, k: int = 10
) -> dict[str, Any]:
    """FAISS flat indexes over images and captions, both directions, measured."""
    from lexret.backends.dense import FaissBackend

    out: dict[str, Any] = {}
    for name, docids, docs in (("images", ids.image_ids, images), ("captions", ids.caption_ids, captions)):
        d = work / f"dense-{name}.faiss"
        d.mkdir(parents=True, exist_ok=True)
        FaissBackend.build(docids, docs, kind="flat").save(d / "faiss.index")
        (d / "docids.txt").write_text("\n".join(docids) + "\n", encoding="utf-8")
        out[f"{name}_bytes"] = (d / "faiss.index").stat().st_size
    q_caps, q_imgs = work / "dense-caption-queries.npz", work / "dense-image-queries.npz"
    np.savez(q_caps, ids=np.array(ids.caption_ids), vectors=captions)
    np.savez(q_imgs, ids=np.array(ids.image_ids), vectors=images)
    return {
        **_both_directions(
            "dense-faiss-flat", ids, work / "dense-images.faiss", work / "dense-captions.faiss", q_caps, q_imgs, k, work
        ),  # fmt: skip
        "index_bytes": out["images_bytes"],
        "caption_index_bytes": out["captions_bytes"],
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as an aligned table: one row per system."""
    cols = [
        ("t2i R@1", ("t2i", "R@1")), ("t2i R@5", ("t2i", "R@5")), ("t2i R@10", ("t2i", "R@10")),
        ("MRR@10", ("t2i", "MRR@10")), ("i2t R@1", ("i2t", "R@1")), ("i2t R@5", ("i2t", "R@5")),
        ("i2t R@10", ("i2t", "R@10")), ("RSUM", ("rsum",)), ("img terms", ("avg_doc_terms",)),
        ("cap terms", ("avg_query_terms",)), ("TP@10", ("term_precision@10",)), ("index MB", ("index_bytes",)),
        ("enc ms", ("query_encode_ms",)), ("search ms", ("search_ms",)),
        ("kpost/1M", ("postings_per_query_per_1m",)),
    ]  # fmt: skip
    width = max(len(s) for s in report["systems"]) + 2
    lines = ["".ljust(width) + "".join(c.rjust(10) for c, _ in cols)]
    for name, vals in report["systems"].items():
        cells = []
        for c, path in cols:
            v: Any = vals
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is None:
                cells.append("-")
            elif c == "index MB":
                cells.append(f"{v / 1e6:.2f}")
            elif c == "kpost/1M":
                cells.append(f"{v / 1e3:.0f}")
            else:
                cells.append(f"{v:.2f}")
        lines.append(name.ljust(width) + "".join(x.rjust(10) for x in cells))
    d = report["data"]
    lines.append(
        f"({d['images']} images, {d['captions']} captions, split {d['split']}; recall in percent; kpost/1M: "
        "thousands of postings a caption query reads per 1M images at this split's term shares)"
    )
    return "\n".join(lines)


def save_report(path: Path, report: dict[str, Any]) -> None:
    write_json(path, report)
    log.info("wrote %s", path)


def load_report(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
