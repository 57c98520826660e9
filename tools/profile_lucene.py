"""Where a Lucene query's time goes, and what two-phase search buys: prints figures, asserts nothing.

On a compare-style corpus (the split's encoded images, then synthetic distractors mixed from the
real encodings with ``lexret.compare.Corpus``, as ``lexret compare`` makes them) and its caption
queries, for a few hundred queries one at a time on one thread:

1. **Breakdown** of one query through lexret's Lucene backend: the Python dict of the query, the
   Java ``HashMap`` built through JNI, the ``SimpleImpactSearcher.search`` call (Anserini builds the
   query, Lucene scores, Anserini loads the hits' stored ids), the hits' conversion to Python; beside
   it Lucene's search alone on a prebuilt query (an ``IndexSearcher`` of our own, no stored fields),
   Anserini's query building alone, and the round trip of a one-term query on the rarest term.
2. **Pruning**: postings in the query's lists (sum of document frequencies), documents matching,
   documents Lucene collected with MaxScore/block-max pruning (``totalHits`` of the top-k search:
   every document that reached the collector) and the time of an exhaustive search (total-hits
   threshold = all, which switches pruning off); and the MaxScore bound: the postings of the terms
   MaxScore must call essential, given each term's largest contribution and the exact 10th score.
3. **Settings**: index order (input, BP, documents sorted by a k-means cluster of their dense
   vectors), one segment (force-merged) against Lucene's segments, and an ``IndexSearcher`` over an
   executor of 2 threads (intra-query concurrency over segment slices), all measured round-robin
   query by query in one process so that their ratios are side by side.
4. **Two-phase** (``--backend lucene-2phase``) against plain Lucene, round-robin again:
   milliseconds per query, tie-aware overlap@10 with the exact top-10 (share of the top-10 whose
   exact score reaches the exact 10th score) and R@10.

    python tools/profile_lucene.py --images CACHE/images-....npz --captions CACHE/texts-....npz \\
        --data ../shared/flickr8k/captions.jsonl --split val --mix docs/compare/distractors-v7.json \\
        --sizes 100000,1000000 --queries 300 --work runs/profile --json runs/profile/profile.json

Indexes are built once under ``--work`` and reused by later invocations.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lexret.backends.lucene import LuceneImpactBackend, start_jvm
from lexret.backends.lucene_two_phase import TwoPhaseLuceneBackend, TwoPhaseParams
from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.compare import CompareConfig, Corpus, Encoded
from lexret.distractors import MixParams
from lexret.fileio import write_json
from lexret.index_meta import read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import Quantizer
from lexret.types import SparseBatch
from lexret.vocab import default_vocabulary

log = logging.getLogger("profile_lucene")

SETTINGS = ("default", "optimize", "bp", "cluster", "short-ids")
DEFAULT_WARMUP = 30
MAX_INT = 2**31 - 1
CLUSTER_SEED = 0
# prune_ratio:expansion[:max_terms]
TWO_PHASE_GRID = ("0.4:5", "0.3:10", "0.2:10", "0:10:16", "0:20:12", "0:20:8", "0:1")


# ----- corpus and indexes ------------------------------------------------------------------------


def load_corpus(images: Path, mix: MixParams, n_total: int, cache: Path) -> tuple[list[str], SparseBatch, np.ndarray]:
    """The split's images and ``n_total - len(split)`` synthetic distractors mixed from them."""
    split = Encoded.load(images)
    cfg = CompareConfig(mix=mix)
    cache.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(split, None, n_total - len(split.ids), cfg, cache)
    ids: list[str] = []
    sparse, dense = [], []
    for e in corpus.chunks():
        ids.extend(e.ids)
        sparse.append(e.sparse)
        dense.append(e.dense)
    return ids, SparseBatch.concat(sparse), np.concatenate(dense)


def cluster_order(dense: np.ndarray, seed: int = CLUSTER_SEED) -> np.ndarray:
    """Documents sorted by a k-means cluster (sqrt(n) clusters) of their dense vectors."""
    import faiss

    n = len(dense)
    k = max(2, int(math.sqrt(n)))
    x = np.ascontiguousarray(dense, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=10, seed=seed, max_points_per_centroid=64, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return np.argsort(assign[:, 0], kind="stable")


def ensure_index(path: Path, ids: list[str], docs: SparseBatch, vocab, cfg: IndexConfig,
                 order: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """Build (or reuse) an index of ``docs``, written in ``order`` when given."""
    if (path / "lexret.json").is_file():
        meta = read_meta(path)
        if meta["num_docs"] == len(ids):
            return meta
    if order is not None:
        ids = [ids[i] for i in order]
        docs = docs.take(order)
    t = time.perf_counter()
    meta = Indexer(vocab, cfg).build([(ids, docs)], path, IndexInfo("profile", "image"), total=len(ids))
    log.info("built %s in %.0f s", path, time.perf_counter() - t)
    return meta


# ----- Java probes -------------------------------------------------------------------------------


class JavaProbe:
    """Lucene reached through pyjnius: an ``IndexSearcher`` of our own over one index."""

    def __init__(self, index_dir: Path, executor_threads: int = 0) -> None:
        from jnius import autoclass

        file = autoclass("java.io.File")
        reader_cls = autoclass("org.apache.lucene.index.DirectoryReader")
        searcher_cls = autoclass("org.apache.lucene.search.IndexSearcher")
        sort_field = autoclass("org.apache.lucene.search.SortField")
        sort_type = autoclass("org.apache.lucene.search.SortField$Type")
        self._collector = autoclass("org.apache.lucene.search.TopFieldCollector")
        self._bow = autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")()
        self._hashmap = autoclass("java.util.HashMap")
        self._float = autoclass("java.lang.Float")
        directory = autoclass("org.apache.lucene.store.FSDirectory").open(file(str(index_dir)).toPath())
        self.reader = reader_cls.open(directory)
        self.executor = None
        if executor_threads:
            self.executor = autoclass("java.util.concurrent.Executors").newFixedThreadPool(executor_threads)
            sig = "(Lorg/apache/lucene/index/IndexReader;Ljava/util/concurrent/Executor;)V"
            self.searcher = searcher_cls(self.reader, self.executor, signature=sig)
        else:
            self.searcher = searcher_cls(self.reader, signature="(Lorg/apache/lucene/index/IndexReader;)V")
        self.searcher.setSimilarity(autoclass("io.anserini.search.similarity.ImpactSimilarity")())
        # Anserini's order: score, then the id string (SimpleImpactSearcher's BREAK_SCORE_TIES_BY_DOCID)
        self.sort = autoclass("org.apache.lucene.search.Sort")(
            sort_field.FIELD_SCORE, sort_field("id", sort_type.STRING_VAL)
        )
        self.segments = int(self.reader.leaves().size())
        self.slices = len(self.searcher.getSlices())

    def jmap(self, query: dict[str, int]):
        m = self._hashmap()
        for t, w in query.items():
            m.put(t, self._float(float(w)))
        return m

    def build(self, jmap):
        return self._bow.buildQuery("contents", jmap)

    def top(self, query, k: int):
        return self.searcher.search(query, k, self.sort, True)

    def exhaustive(self, query, k: int):
        return self.searcher.search(query, self._collector.createSharedManager(self.sort, k, None, MAX_INT))

    def count(self, query) -> int:
        return int(self.searcher.count(query))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
        self.reader.close()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1e3, out


def summary(ms: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(ms), "p50": statistics.median(ms)}


# ----- measurements ------------------------------------------------------------------------------


def query_dicts(q: SparseBatch, tokens) -> list[dict[str, int]]:
    return [{tokens[j]: int(v) for j, v in zip(*(x.tolist() for x in q.row(i)))} for i in range(len(q))]


def breakdown(index: Path, q: SparseBatch, tokens, df: np.ndarray, k: int, warmup: int) -> dict[str, Any]:
    """Where one query's time goes through lexret's Lucene backend (means over the queries, ms)."""
    backend = LuceneImpactBackend(index)
    probe = JavaProbe(index)
    present = np.nonzero(df)[0]
    rare = tokens[int(present[np.argmin(df[present])])]
    parts: dict[str, list[float]] = {name: [] for name in (
        "lexret_total", "py_dict", "jni_hashmap", "anserini_search", "hit_conversion", "lucene_search_only",
        "anserini_query_build", "one_rare_term_roundtrip")}  # fmt: skip
    for i in range(len(q)):
        t_dict, d = timed(lambda i=i: query_dicts(q.slice(i, i + 1), tokens)[0])
        t_total, _ = timed(lambda d=d: backend.search(["q"], [d], k))
        t_map, jq = timed(lambda d=d: backend._jquery(d))
        t_java, hits = timed(lambda jq=jq: backend._searcher.search(jq, k))
        t_conv, _ = timed(lambda hits=hits: [(h.docid, float(round(h.score))) for h in hits])
        jm = probe.jmap(d)
        t_build, query = timed(lambda jm=jm: probe.build(jm))
        t_lucene, _ = timed(lambda query=query: probe.top(query, k))
        t_rare, _ = timed(lambda: backend.search(["q"], [{rare: 1}], k))
        if i < warmup:
            continue
        for name, v in zip(parts, (t_dict + t_total, t_dict, t_map, t_java, t_conv, t_lucene, t_build, t_rare)):
            parts[name].append(v)
    backend.close()
    probe.close()
    out = {name: summary(v) for name, v in parts.items()}
    out["stored_id_loading_and_tie_adjust_est"] = {
        s: out["anserini_search"][s] - out["lucene_search_only"][s] - out["anserini_query_build"][s]
        for s in ("mean", "p50")
    }
    return out


def essential_postings(q: SparseBatch, docs: SparseBatch, df: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Per query, the postings of the terms MaxScore must treat as essential: terms sorted by their
    largest contribution (query weight x the term's largest impact); the lightest terms whose summed
    bounds stay below the exact k-th score can be skipped, the rest must be iterated."""
    max_impact = np.zeros(docs.dim, dtype=np.int64)
    np.maximum.at(max_impact, docs.indices, docs.values.astype(np.int64))
    out = np.zeros(len(q), dtype=np.int64)
    for i in range(len(q)):
        idx, val = q.row(i)
        bound = val.astype(np.int64) * max_impact[idx]
        order = np.argsort(bound)
        non_essential = np.cumsum(bound[order]) < kth[i]
        out[i] = int(df[idx[order][~non_essential]].sum())
    return out


def pruning(index: Path, q: SparseBatch, dicts, df, k: int, kth: np.ndarray, docs, warmup: int) -> dict[str, Any]:
    probe = JavaProbe(index)
    rows: dict[str, list[float]] = {n: [] for n in ("postings", "matching", "collected", "ms_pruned", "ms_exhaustive")}
    for i, d in enumerate(dicts):
        query = probe.build(probe.jmap(d))
        t_pruned, top = timed(lambda query=query: probe.top(query, k))
        t_exh, _ = timed(lambda query=query: probe.exhaustive(query, k))
        if i < warmup:
            continue
        idx = q.row(i)[0]
        rows["postings"].append(float(df[idx].sum()))
        rows["matching"].append(float(probe.count(query)))
        rows["collected"].append(float(top.totalHits.value))
        rows["ms_pruned"].append(t_pruned)
        rows["ms_exhaustive"].append(t_exh)
    probe.close()
    out = {n: statistics.fmean(v) for n, v in rows.items()}
    ess = essential_postings(q, docs, df, kth)[warmup:]
    out["maxscore_essential_postings"] = float(ess.mean())
    out["queries_with_a_non_essential_term"] = float(np.mean(ess < np.array(rows["postings"])))
    return out


def settings_round_robin(indexes: dict[str, Path], dicts, k: int, executor_threads: int, warmup: int) -> dict:
    """Lucene's search alone (own IndexSearcher, prebuilt query) per setting, query by query."""
    probes = {name: JavaProbe(path) for name, path in indexes.items()}
    if executor_threads and "default" in indexes:
        probes[f"default+executor{executor_threads}"] = JavaProbe(indexes["default"], executor_threads)
    if executor_threads and "optimize" in indexes:
        probes[f"optimize+executor{executor_threads}"] = JavaProbe(indexes["optimize"], executor_threads)
    ms: dict[str, list[float]] = {n: [] for n in probes}
    collected: dict[str, list[float]] = {n: [] for n in probes}
    for i, d in enumerate(dicts):
        for name, probe in probes.items():
            query = probe.build(probe.jmap(d))
            t, top = timed(lambda probe=probe, query=query: probe.top(query, k))
            if i >= warmup:
                ms[name].append(t)
                collected[name].append(float(top.totalHits.value))
    out = {
        name: {**summary(ms[name]), "collected": statistics.fmean(collected[name]), "segments": p.segments,
               "slices": p.slices}
        for name, p in probes.items()
    }  # fmt: skip
    for p in probes.values():
        p.close()
    return out


def two_phase(index: Path, ids, qdocs: SparseBatch, q: SparseBatch, qids, tokens, k: int, exact: dict,
              qrels: dict | None, grid: list[TwoPhaseParams], warmup: int) -> dict[str, Any]:  # fmt: skip
    """Plain Lucene and two-phase settings, query by query: ms, tie-aware overlap@10, R@10."""
    from lexret.metrics import evaluate

    lucene = LuceneImpactBackend(index)
    tp = TwoPhaseLuceneBackend(lucene, ids, qdocs, tokens)
    dicts = query_dicts(q, tokens)
    names = ["lucene"] + [
        f"2phase r={p.prune_ratio:g} x{p.expansion:g}"
        + (f" m={p.max_terms}" if p.max_terms else "")
        + (f" b={p.max_postings}" if p.max_postings else "")
        for p in grid
    ]
    ms: dict[str, list[float]] = {n: [] for n in names}
    runs: dict[str, dict] = {n: {} for n in names}
    terms: dict[str, list[int]] = {n: [] for n in names}
    for i, qid in enumerate(qids):
        t, r = timed(lambda i=i, qid=qid: lucene.search([qid], [dicts[i]], k))
        runs["lucene"].update(r)
        terms["lucene"].append(len(dicts[i]))
        if i >= warmup:
            ms["lucene"].append(t)
        for name, p in zip(names[1:], grid):
            tp.params = p
            t, r = timed(lambda i=i, qid=qid: tp.search([qid], q.slice(i, i + 1), k))
            runs[name].update(r)
            terms[name].append(len(tp.phase1_terms(*q.row(i))[0]))
            if i >= warmup:
                ms[name].append(t)
    lucene.close()
    out = {}
    for name in names:
        ov = []
        for qid in qids:
            depth = min(k, len(exact[qid]))  # a query may match fewer than k documents
            if depth == 0:
                continue
            kth = exact[qid][depth - 1][1]
            ov.append(sum(sc >= kth for _, sc in runs[name][qid][:depth]) / depth)
        rec = {**summary(ms[name]), "overlap@10": statistics.fmean(ov), "query_terms": statistics.fmean(terms[name])}
        if qrels is not None:
            rec["R@10"] = evaluate(runs[name], {q_: qrels[q_] for q_ in qids}, ("R@10",))["R@10"]
        out[name] = rec
    base = out["lucene"]["mean"]
    for rec in out.values():
        rec["speedup_vs_lucene"] = base / rec["mean"]
    return out


def candidate_curve(qdocs: SparseBatch, q: SparseBatch, df: np.ndarray, k: int, terms: list[int],
                    expansions: list[float]) -> dict[str, Any]:  # fmt: skip
    """Two-phase's ceiling without Lucene: for phase 1 = the ``m`` heaviest terms (exact scores by a
    sparse product) and ``k x e`` candidates, the tie-aware overlap@k of the rescored top-k with the
    exact one and the postings phase 1 reads, as a share of the whole query's."""
    dt = qdocs.to_scipy().T.tocsr().astype(np.float64)  # terms x documents
    out: dict[str, Any] = {}
    fulls = []
    for i in range(len(q)):
        idx, val = q.row(i)
        full = np.asarray(dt[idx].T @ val.astype(np.float64)).ravel()
        fulls.append((full, np.sort(full)[-k], float(df[idx].sum())))
    for m in terms:
        params = TwoPhaseParams(prune_ratio=0.0, max_terms=m)
        for e in expansions:
            ov, share = [], []
            for i, (full, kth, postings) in enumerate(fulls):
                idx, val = params.keep(*q.row(i))
                part = np.asarray(dt[idx].T @ val.astype(np.float64)).ravel()
                n = min(math.ceil(k * e), len(part) - 1)
                cand = np.argpartition(-part, n)[:n]
                cand = cand[part[cand] > 0]
                top = cand[np.argsort(-full[cand], kind="stable")[:k]]
                ov.append(float(np.mean(full[top] >= kth)) if kth > 0 else 1.0)
                share.append(float(df[idx].sum()) / postings if postings else 1.0)
            out[f"m={m} x{e:g}"] = {"overlap@10": statistics.fmean(ov), "postings_share": statistics.fmean(share)}
    return out


# ----- main --------------------------------------------------------------------------------------


def parse_grid(text: str) -> list[TwoPhaseParams]:
    grid = []
    for item in text.split(","):
        ratio, exp, *rest = item.split(":")  # ratio:expansion[:max_terms[:max_postings]], empty = none
        most = int(rest[0]) if rest and rest[0] else None
        budget = int(rest[1]) if len(rest) > 1 and rest[1] else None
        grid.append(TwoPhaseParams(float(ratio), float(exp), most, budget))
    return grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="encoded split images (a compare cache's images-*.npz)")
    p.add_argument("--captions", required=True, help="encoded captions of the split (a compare cache's texts-*.npz)")
    p.add_argument("--data", default=None, help="captions JSONL of the split, for R@10 (optional)")
    p.add_argument("--split", default=None)
    p.add_argument("--mix", default=None, help="distractors.json of a compare run (calibrated mixing parameters)")
    p.add_argument("--sizes", default="100000", help="corpus sizes, comma separated")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"index settings among {', '.join(SETTINGS)}")
    p.add_argument("--queries", type=int, default=300, help="caption queries measured (after the warm-up)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="queries run first and not measured")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--executor-threads", type=int, default=2, help="intra-query concurrency; 0 skips it")
    p.add_argument(
        "--two-phase", default=",".join(TWO_PHASE_GRID),
        help="prune_ratio:expansion[:max_terms[:max_postings]],... ('' skips)",
    )  # fmt: skip
    p.add_argument("--parts", default="breakdown,pruning,settings,two-phase,candidates")
    p.add_argument("--curve-terms", default="8,12,16,24", help="candidates part: heaviest terms kept")
    p.add_argument("--curve-expansions", default="2,5,10,20", help="candidates part: k x these candidates")
    p.add_argument("--work", required=True, help="folder for the corpora's indexes (reused)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--cache", default=None, help="synthetic distractor chunks (default: WORK/cache)")
    p.add_argument("--heap", default="4g")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start_jvm(args.heap)
    vocab = default_vocabulary()
    tokens = vocab.tokens
    mix = MixParams(**json.loads(Path(args.mix).read_text())["params"]) if args.mix else MixParams()
    cap = Encoded.load(Path(args.captions))
    qrels = None
    if args.data:
        from lexret.data import load_captions
        from lexret.evaluation import SplitIds

        split_ids = SplitIds.from_collection(load_captions(args.data, split=args.split))
        if len(split_ids.caption_ids) != len(cap.ids):
            raise SystemExit(f"{args.data} has {len(split_ids.caption_ids)} captions, {args.captions} {len(cap.ids)}")
        qids_all, qrels = split_ids.caption_ids, split_ids.qrels_t2i()
    else:
        qids_all = [f"c{i}" for i in range(len(cap.ids))]
    nq = min(args.queries + args.warmup, len(cap.ids))
    pick = np.random.default_rng(0).permutation(len(cap.ids))[:nq]
    qids = [qids_all[i] for i in pick]
    settings = [s for s in args.settings.split(",") if s]
    parts = set(args.parts.split(","))
    report: dict[str, Any] = {"queries": nq - args.warmup, "warmup": args.warmup, "k": args.k, "mix": mix.__dict__}
    report["sizes"] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        work = Path(args.work) / f"corpus-{n}"
        t = time.perf_counter()
        ids, docs, dense = load_corpus(Path(args.images), mix, n, Path(args.cache or Path(args.work) / "cache"))
        log.info("corpus of %d items in %.0f s", len(ids), time.perf_counter() - t)
        base = IndexConfig(threads=2)
        configs = {"default": base, "optimize": replace(base, optimize=True), "bp": replace(base, reorder="bp"),
                   "cluster": base, "short-ids": replace(base, short_ids=True)}  # fmt: skip
        metas, paths = {}, {}
        for s in settings:
            order = None
            if s == "cluster" and not (work / s / "lexret.json").is_file():
                order = cluster_order(dense)
            metas[s] = ensure_index(work / s, ids, docs, vocab, configs[s], order)
            paths[s] = work / s
        del dense
        quant = Quantizer(metas["default"]["quantization"]["scale"], metas["default"]["quantization"]["max_impact"])
        qdocs = quant(docs)
        del docs
        q = quant(cap.sparse.take(pick))
        df = np.bincount(qdocs.indices, minlength=qdocs.dim)
        dicts = query_dicts(q, tokens)
        t = time.perf_counter()
        exact = ScipySparseBackend(ids, qdocs).search(qids, q, args.k)
        log.info("exact top-%d of %d queries in %.1f s", args.k, len(qids), time.perf_counter() - t)
        kth = np.array([h[args.k - 1][1] if len(h) >= args.k else 0.0 for h in (exact[x] for x in qids)])
        rec: dict[str, Any] = {
            "index_bytes": {s: m["index_bytes"] for s, m in metas.items()},
            "id_bytes": {
                s: {f: b for f, b in m["files"].items() if f.endswith((".fdt", ".dvd", ".tim"))}
                for s, m in metas.items()
            },  # fmt: skip
            "query_terms": float(q.terms_per_row().mean()),
        }
        if "breakdown" in parts:
            rec["breakdown_ms"] = breakdown(paths["default"], q, tokens, df, args.k, args.warmup)
        if "pruning" in parts:
            rec["pruning"] = pruning(paths["default"], q, dicts, df, args.k, kth, qdocs, args.warmup)
        if "settings" in parts:
            searchable = {s: pth for s, pth in paths.items() if s != "short-ids"}
            rec["settings_ms"] = settings_round_robin(searchable, dicts, args.k, args.executor_threads, args.warmup)
        if "two-phase" in parts and args.two_phase:
            rec["two_phase"] = two_phase(paths["default"], ids, qdocs, q, qids, tokens, args.k, exact, qrels,
                                         parse_grid(args.two_phase), args.warmup)  # fmt: skip
        if "candidates" in parts:
            rec["candidates"] = candidate_curve(qdocs, q, df, args.k, [int(x) for x in args.curve_terms.split(",")],
                                                [float(x) for x in args.curve_expansions.split(",")])  # fmt: skip
        report["sizes"][str(n)] = rec
        print_size(n, rec)
        if args.json:
            write_json(args.json, report)


def print_size(n: int, rec: dict[str, Any]) -> None:
    print(f"\n=== corpus {n:,} items, {rec['query_terms']:.1f} terms per query ===")
    print("index bytes: " + ", ".join(f"{s} {b / 1e6:.2f} MB" for s, b in rec["index_bytes"].items()))
    if "breakdown_ms" in rec:
        print("one query through lexret's Lucene backend (ms, mean / p50):")
        for name, v in rec["breakdown_ms"].items():
            print(f"  {name:40s} {v['mean']:8.3f} {v['p50']:8.3f}")
    if "pruning" in rec:
        print("postings and pruning (means per query):")
        for name, v in rec["pruning"].items():
            print(f"  {name:40s} {v:14,.2f}")
    if "settings_ms" in rec:
        print("Lucene search alone per setting (ms mean / p50, docs collected, segments, slices):")
        for name, v in rec["settings_ms"].items():
            print(f"  {name:26s} {v['mean']:8.3f} {v['p50']:8.3f} {v['collected']:12,.0f} {v['segments']:4d} "
                  f"{v['slices']:4d}")  # fmt: skip
    if "two_phase" in rec:
        print("two-phase vs Lucene (ms mean / p50, speed-up, overlap@10 with exact, R@10, phase-1 terms):")
        for name, v in rec["two_phase"].items():
            print(f"  {name:26s} {v['mean']:8.3f} {v['p50']:8.3f} {v['speedup_vs_lucene']:6.2f}x "
                  f"{v['overlap@10']:6.3f} {v.get('R@10', float('nan')):6.2f} {v['query_terms']:5.1f}")  # fmt: skip
    if "candidates" in rec:
        print("two-phase ceiling (exact scores, no Lucene): overlap@10 and phase-1 postings / whole query's:")
        for name, v in rec["candidates"].items():
            print(f"  {name:14s} {v['overlap@10']:6.3f} {v['postings_share']:6.3f}")


if __name__ == "__main__":
    main()
