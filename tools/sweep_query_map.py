"""Sweep query-map settings (and DF caps on the documents) on held-out training images, in parallel.

Two steps, so that the sweep can run on another machine with only numpy, scipy and torch:

    # 1. the documents' model's vectors of the training images and captions (feature cache + model)
    python tools/sweep_query_map.py export --data ../shared/flickr8k/captions.jsonl \
        --cache-dir runs/.feature-cache --out runs/sweep/qm.npz
    # 2. one training per setting x fold x seed, ``--jobs`` at a time, figures to JSON
    python tools/sweep_query_map.py run --npz runs/sweep/qm.npz --grid grid.json --folds 5 \
        --seeds 0,1 --jobs 8 --out runs/sweep/results.json

``grid.json`` maps a setting's name to QueryMapConfig fields plus ``df_cap`` (share of the images that
keep each term; absent: no cap), e.g. ``{"base": {}, "cap3": {"df_cap": 0.03}}``. Fold ``f`` of ``F``
holds out every F-th block of training images (``[f*n/F, (f+1)*n/F)``) as dev; the map, and the DF cap's
thresholds, are fitted on the rest. Per run it prints and stores, on the dev images: text->image
R@1/5/10 among the dev images and among the dev images plus 4,000 of the fold's training images
(a harder collection, closer to what a large index asks), image->text R@1/5/10 (the capped image vector
as query against the documents' model's caption vectors), postings per query per 1M images at the
fold's term shares, terms per image, and term precision@10 of the dev images (``tp10``: the % of each
image's 10 heaviest content terms that are wordpieces of its own captions, as ``lexret eval``'s
term_precision@10; the captions' wordpieces are the feature cache's ids stored as ``X``, which give
``lexret eval``'s val figures exactly: 42.1 for v7, 40.9 for v3) beside that of the documents' model's
untransformed images (``tp10_documents``). Val is never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("sweep_query_map")

# figures averaged over folds and seeds per setting in the summary
SUMMARY_KEYS = ("t2i_sum", "t2i_hard_sum", "i2t_sum", "postings_per_1m", "terms_per_image", "rare_expansions", "tp10",
                "tp10_documents")  # fmt: skip


def export(args: argparse.Namespace) -> None:
    from lexret.data import load_captions
    from lexret.model.checkpoint import load_model, read_config
    from lexret.training.cache import build_cache
    from lexret.training.query_map import cached_document_vectors, presence
    from lexret.vocab import default_vocabulary

    documents = Path(args.documents)
    dcfg = read_config(documents)
    model, _ = load_model(documents)
    train = load_captions(args.data, split="train").items
    val = load_captions(args.data, split="val").items
    cache = build_cache(train + val, Path(args.cache_dir), image_backbone=dcfg["image_backbone"])
    n = len(train)
    D, T = cached_document_vectors(
        model, cache, n, int(dcfg.get("top_k_image", 64)), int(dcfg.get("top_k_text", 32)), dcfg["model_id"]
    )
    caps = np.nonzero(cache.caption_owner < n)[0]
    active = model.active.numpy()
    to_active = np.full(len(default_vocabulary()), -1, np.int64)
    to_active[active] = np.arange(active.size)
    X = presence(np.asarray(cache.text_ids[caps]), to_active, active.size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"owner": np.asarray(cache.caption_owner[caps]), "active": active}
    for name, m in (("D", D), ("T", T), ("X", X)):
        m = m.tocsr()
        arrays |= {f"{name}_data": m.data.astype(np.float16), f"{name}_indices": m.indices.astype(np.int16),
                   f"{name}_indptr": m.indptr, f"{name}_shape": np.array(m.shape)}  # fmt: skip
    np.savez_compressed(out, **arrays)
    log.info("wrote %s (%.1f MB): %d images, %d captions", out, out.stat().st_size / 1e6, n, caps.size)


def _csr(z, name: str) -> sp.csr_matrix:
    return sp.csr_matrix(
        (z[f"{name}_data"].astype(np.float32), z[f"{name}_indices"].astype(np.int64), z[f"{name}_indptr"]),
        shape=tuple(z[f"{name}_shape"]),
    )


def _recalls(scores: np.ndarray, own: np.ndarray) -> list[float]:
    r = (scores > scores[np.arange(own.size), own][:, None]).sum(1)
    return [round(100 * float(np.mean(r < k)), 1) for k in (1, 5, 10)]


def content_columns(active: np.ndarray) -> np.ndarray:
    """Which of the vectors' columns (vocabulary ids ``active``) are content terms (TP@10 counts those)."""
    from lexret.text import is_content_term
    from lexret.vocab import default_vocabulary

    tokens = default_vocabulary().tokens
    return np.array([is_content_term(tokens[t]) for t in active], dtype=bool)


def one_run(job: dict) -> dict:
    import torch

    from lexret.training.config import QueryMapConfig
    from lexret.training.evaluate import term_precision_csr
    from lexret.training.query_map import QueryMapTrainer, _prune_normalize, capped_documents, image_presence

    torch.set_num_threads(job["threads"])
    t0 = time.time()
    with np.load(job["npz"]) as z:
        D, T, X, owner = _csr(z, "D"), _csr(z, "T"), _csr(z, "X"), z["owner"].astype(np.int64)
        active = z["active"]
    n = D.shape[0]
    lo, hi = job["fold"] * n // job["folds"], (job["fold"] + 1) * n // job["folds"]
    order = np.concatenate([np.setdiff1d(np.arange(n), np.arange(lo, hi)), np.arange(lo, hi)])  # dev last
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    D = D[order]
    owner = rank[owner]
    n_train = n - (hi - lo)
    setting = dict(job["setting"])
    cap = setting.pop("df_cap", None)
    if cap:
        D, _ = capped_documents(D, n_train, float(cap), np.arange(D.shape[1]))
    cfg = QueryMapConfig(seed=job["seed"], **setting)
    torch.manual_seed(job["seed"])
    content = content_columns(active)
    trainer = QueryMapTrainer(cfg, X, owner, D, T, n_train, content=content)
    logging.getLogger("lexret").setLevel(logging.WARNING)
    trainer.fit()
    D = trainer.documents()  # the images as trained (capped, or through learned per-term scales)
    dev = np.nonzero(owner >= n_train)[0]
    own = owner[dev] - n_train
    with torch.no_grad():
        Q = _prune_normalize(trainer.queries(dev).numpy(), cfg.top_k_text)
    Dd = D[n_train:]
    hard = sp.vstack([Dd, D[: min(4000, n_train)]]).tocsr()
    i2t_scores = np.asarray((Dd @ T[dev].T).todense())  # dev images x dev captions
    best_own = np.array([i2t_scores[i, own == i].max() for i in range(Dd.shape[0])])
    r = (i2t_scores > best_own[:, None]).sum(1)
    i2t = [round(100 * float(np.mean(r < k)), 1) for k in (1, 5, 10)]
    t2i = _recalls(np.asarray((Dd @ Q.T).T), own)
    t2i_hard = _recalls(np.asarray((hard @ Q.T).T), own)
    df = np.asarray((D[:n_train] > 0).mean(0)).ravel()
    # readability proxy: expansion terms (not among the caption's own wordpieces) that fewer than 0.2% of
    # the documents' model's own training images hold, per query: terms a reader cannot explain
    raw_df = np.asarray((trainer.D[:n_train] > 0).mean(0)).ravel()
    expansion = (Q > 0) & (X[dev].toarray() == 0)
    rare_expansions = float((expansion & (raw_df < 0.002)[None, :]).sum(1).mean())
    # term precision@10 of the dev images: their captions' wordpieces (the feature cache's ids, as X)
    present = image_presence(X[dev], own, Dd.shape[0])
    tp10 = term_precision_csr(Dd, present, content)
    tp10_documents = term_precision_csr(trainer.D[n_train:], present, content)  # the documents' model's own
    out = {
        "name": job["name"], "fold": job["fold"], "seed": job["seed"],
        "t2i": t2i, "t2i_sum": round(sum(t2i), 1), "t2i_hard": t2i_hard, "t2i_hard_sum": round(sum(t2i_hard), 1),
        "i2t": i2t, "i2t_sum": round(sum(i2t), 1),
        "postings_per_1m": int(((Q > 0) * df).sum(1).mean() * 1e6),
        "terms_per_image": round(D[:n_train].getnnz() / n_train, 1),
        "rare_expansions": round(rare_expansions, 2),
        "tp10": round(tp10, 2), "tp10_documents": round(tp10_documents, 2),
        "minutes": round((time.time() - t0) / 60, 2),
    }  # fmt: skip
    print(json.dumps(out), flush=True)
    return out


def run(args: argparse.Namespace) -> None:
    text = args.grid if args.grid.lstrip().startswith("{") else Path(args.grid).read_text()  # JSON or a file
    grid = json.loads(text)
    seeds = [int(s) for s in args.seeds.split(",")]
    folds = [int(f) for f in args.only_folds.split(",")] if args.only_folds else range(args.folds)
    jobs = [
        {
            "npz": args.npz,
            "name": name,
            "setting": s,
            "fold": f,
            "folds": args.folds,
            "seed": seed,
            "threads": args.threads,
        }  # fmt: skip
        for name, s in grid.items()
        for f in folds
        for seed in seeds
    ]
    log.info("%d runs, %d at a time", len(jobs), args.jobs)
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one_run, jobs))
    summary = {}
    for name in grid:
        rows = [r for r in results if r["name"] == name]
        summary[name] = {
            k: [round(float(np.mean([r[k] for r in rows])), 2), round(float(np.std([r[k] for r in rows])), 2)]
            for k in SUMMARY_KEYS
        } | {"runs": len(rows)}
        print(name, json.dumps(summary[name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "runs": results}, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="the documents' model's vectors of the training images and captions")
    e.add_argument("--data", required=True)
    e.add_argument("--cache-dir", required=True)
    e.add_argument("--documents", default=str(Path(__file__).resolve().parents[1] / "lexret/checkpoints/sparse"))
    e.add_argument("--out", required=True)
    r = sub.add_parser("run", help="train and measure one map per setting x fold x seed")
    r.add_argument("--npz", required=True)
    r.add_argument("--grid", required=True, help="JSON file or string: name -> settings")
    r.add_argument("--folds", type=int, default=6, help="training images split in this many blocks")
    r.add_argument("--only-folds", default="", help="comma-separated folds to run (default: all)")
    r.add_argument("--seeds", default="0")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    r.add_argument("--out", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.cmd == "export":
        export(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
