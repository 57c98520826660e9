"""What a postings budget per query costs, measured on a finished ``lexret compare`` run: prints
figures, asserts nothing.

Phase 1 of a two-phase search reads at most ``B`` postings per caption query and keeps its best
``C`` documents; phase 2 scores those ``C`` exactly with the whole query and keeps the top ``k``.
For the run's stored quantized corpus (``corpus-N/lucene/docvectors.npz``) and its caption queries,
with exact scores (scipy, no Lucene: the ceiling of each policy, not its speed), two ways of
spending the budget are compared:

- ``terms``: whole posting lists of the most selective query terms (weight x idf first) that fit in
  ``B``, as ``lexret search --backend lucene-2phase --max-postings B`` does (``C`` = k x expansion);
- ``impacts``: the ``B`` postings with the largest query weight x impact across all the query's
  lists, as an engine over impact-ordered posting lists would read them (score-at-a-time, anytime).

For each (policy, B, C): postings read per query, tie-aware overlap@10 with the exact top-10 (share
of the returned top-10 whose exact score reaches the exact 10th score) and R@1/5/10 of the text->image
queries (every ``--stride``-th caption).

    python tools/bench_postings_budget.py --compare-dir runs/compare --data ../shared/flickr8k/captions.jsonl \\
        --split val --budgets 540000,1000000 --candidates 200,1000 --stride 10

Writes ``COMPARE_DIR/postings_budget.json``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from _compare_run import add_run_arguments, open_run

from lexret.backends.lucene_two_phase import TwoPhaseParams
from lexret.data import load_captions
from lexret.evaluation import SplitIds
from lexret.fileio import write_json
from lexret.index_meta import read_meta
from lexret.quantize import Quantizer
from lexret.vectors import read_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_postings_budget")
POLICIES = ("terms", "impacts")


def phase1_postings(policy: str, lists: list[tuple[np.ndarray, np.ndarray]], idx: np.ndarray, val: np.ndarray,
                    df: np.ndarray, n_docs: int, budget: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(documents, contributions)`` of the postings phase 1 reads under ``budget``; ``lists[j]`` holds
    the (documents, impacts) of query term ``idx[j]``."""
    if policy == "terms":
        kept = set(TwoPhaseParams(prune_ratio=0.0, max_postings=budget).keep(idx, val, df, n_docs)[0].tolist())
        parts = [(d, imp * v) for (d, imp), t, v in zip(lists, idx.tolist(), val) if t in kept]
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    docs = np.concatenate([d for d, _ in lists])
    contrib = np.concatenate([imp * v for (_, imp), v in zip(lists, val)])
    if budget < contrib.size:  # the budget's largest contributions (ties at the cut: any of them)
        top = np.argpartition(-contrib, budget)[:budget]
        docs, contrib = docs[top], contrib[top]
    return docs, contrib


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, "corpus size to measure (default: the largest in the run)")
    p.add_argument("--budgets", default="540000,1000000", help="postings read per query")
    p.add_argument("--candidates", default="200,1000", help="documents phase 1 passes to phase 2")
    p.add_argument("--stride", type=int, default=10, help="measure every STRIDE-th caption query")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        budgets = [int(b) for b in args.budgets.split(",")]
        cands = [int(c) for c in args.candidates.split(",")]
    except ValueError:
        raise SystemExit("--budgets and --candidates take whole numbers, e.g. 540000,1000000") from None
    if min(budgets) < 1 or min(cands) < args.k or args.stride < 1:
        raise SystemExit("budgets must be at least 1, candidates at least --k, --stride at least 1")

    out, compare = open_run(args.compare_dir)
    sizes = sorted({r["corpus_size"] for r in compare})
    size = int(args.sizes) if args.sizes else max(sizes)
    src = out / f"corpus-{size}" / "lucene"
    if not (src / "docvectors.npz").is_file():
        raise SystemExit(f"{src} holds no docvectors.npz: measure sparse-lucene or sparse-exact at {size} first")
    import scipy.sparse as sp

    vocab = default_vocabulary()
    meta = read_meta(src)
    quant = Quantizer(meta["quantization"]["scale"], meta["quantization"]["max_impact"])
    with np.load(src / "docvectors.npz") as z:
        n_docs = len(z["indptr"]) - 1
        docs = sp.csr_matrix((z["values"].astype(np.float64), z["indices"], z["indptr"]), shape=(n_docs, len(vocab)))
    by_term = docs.T.tocsr()
    df = np.diff(by_term.indptr).astype(np.int64)
    row_of = {d: i for i, d in enumerate((src / "docids.txt").read_text(encoding="utf-8").split("\n")[:n_docs])}
    qs = read_vectors(out / "queries-sparse.npz", vocab)
    queries = quant(qs.batch)
    qrels = SplitIds.from_collection(load_captions(args.data, split=args.split)).qrels_t2i()
    chosen = list(range(0, len(queries), args.stride))
    k = args.k
    stats = {(pol, b, c): {"overlap": [], "ranks": [], "postings": []} for pol in POLICIES for b in budgets
             for c in cands}  # fmt: skip
    exact_ranks, exact_postings = [], []
    t0 = time.perf_counter()
    for n, i in enumerate(chosen):
        idx, val = queries.row(i)
        val = val.astype(np.float64)
        lists = [(by_term.indices[by_term.indptr[t] : by_term.indptr[t + 1]],
                  by_term.data[by_term.indptr[t] : by_term.indptr[t + 1]]) for t in idx.tolist()]  # fmt: skip
        full = np.zeros(n_docs)
        for (d, imp), v in zip(lists, val):
            full[d] += imp * v
        kth = np.partition(full, max(n_docs - k, 0))[max(n_docs - k, 0)]
        gold = [row_of[d] for d in qrels[qs.ids[i]] if d in row_of]
        cand = np.argpartition(-full, min(k, n_docs - 1))[:k]
        exact_ranks.append(_rank(cand[np.lexsort((cand, -full[cand]))], gold))
        exact_postings.append(int(df[idx].sum()))
        for pol in POLICIES:
            for b in budgets:
                d, c = phase1_postings(pol, lists, idx, val, df, n_docs, b)
                part = np.bincount(d, weights=c, minlength=n_docs)
                for nc in cands:
                    cand = np.argpartition(-part, min(nc, n_docs - 1))[:nc]
                    cand = cand[part[cand] > 0]
                    top = cand[np.lexsort((cand, -full[cand]))][:k]
                    s = stats[(pol, b, nc)]
                    s["overlap"].append(float(np.mean(full[top] >= kth)) if kth > 0 and top.size else 1.0)
                    s["ranks"].append(_rank(top, gold))
                    s["postings"].append(int(d.size))
        if n % 100 == 0:
            log.info("%d of %d queries (%.0f s)", n, len(chosen), time.perf_counter() - t0)

    def recalls(ranks: list[int]) -> dict[str, float]:
        r = np.array(ranks)
        return {f"R@{c}": float(100 * np.mean(r < c)) for c in (1, 5, 10)}

    records = [{"corpus_size": size, "policy": "exact", "budget": None, "candidates": None, "queries": len(chosen),
                "postings_per_query": float(np.mean(exact_postings)), "overlap@10": 1.0,
                **recalls(exact_ranks)}]  # fmt: skip
    for (pol, b, c), s in stats.items():
        records.append({"corpus_size": size, "policy": pol, "budget": b, "candidates": c, "queries": len(chosen),
                        "postings_per_query": float(np.mean(s["postings"])), "overlap@10": float(np.mean(s["overlap"])),
                        **recalls(s["ranks"])})  # fmt: skip
    write_json(out / "postings_budget.json", records)
    head = ["policy", "budget", "candidates", "postings/query", "overlap@10", "R@1", "R@5", "R@10", "R@10 / exact"]
    print(f"corpus {size:,}: {len(chosen)} caption queries, exact scores (no Lucene)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    base = records[0]["R@10"]
    for r in records:
        cells = [r["policy"], "-" if r["budget"] is None else f"{r['budget']:,}",
                 "-" if r["candidates"] is None else f"{r['candidates']:,}", f"{r['postings_per_query']:,.0f}",
                 f"{r['overlap@10']:.3f}", f"{r['R@1']:.2f}", f"{r['R@5']:.2f}", f"{r['R@10']:.2f}",
                 f"{r['R@10'] / base:.1%}" if base else "-"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


def _rank(top: np.ndarray, gold: list[int]) -> int:
    """Position of the first relevant document in ``top`` (len(top) + 10**6 if none)."""
    hits = np.nonzero(np.isin(top, gold))[0]
    return int(hits[0]) if hits.size else 10**6


if __name__ == "__main__":
    raise SystemExit(main())
