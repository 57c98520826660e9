"""Retrieval metrics from a run and qrels, in percent as cross-modal papers report them.

``R@K`` follows the image-text retrieval convention: the share of queries with at least one
relevant item in the top K (text->image: the caption's image; image->text: any of its captions).
``MRR@10`` and ``nDCG@10`` use binary or graded relevance as in trec_eval. Queries that are in the
qrels but not in the run count as failures; queries absent from the qrels are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from lexret.errors import InputError
from lexret.trec import Qrels

DEFAULT_METRICS: tuple[str, ...] = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")


def _parse(name: str) -> tuple[str, int]:
    try:
        kind, k = name.split("@")
        kval = int(k)
    except ValueError:
        raise InputError(f"unknown metric {name!r}; use R@K, MRR@K or nDCG@K") from None
    if kind not in ("R", "MRR", "nDCG") or kval < 1:
        raise InputError(f"unknown metric {name!r}; use R@K, MRR@K or nDCG@K")
    return kind, kval


def per_query(
    run: Mapping[str, Sequence[tuple[str, float]]], qrels: Qrels, metrics: Iterable[str] = DEFAULT_METRICS
) -> dict[str, dict[str, float]]:
    """Metric values in [0, 1] for each query of ``qrels``."""
    parsed = [(m, *_parse(m)) for m in metrics]
    out: dict[str, dict[str, float]] = {}
    for qid, rels in qrels.items():
        relevant = {d: g for d, g in rels.items() if g > 0}
        ranked = [d for d, _ in run.get(qid, ())]
        vals: dict[str, float] = {}
        for name, kind, k in parsed:
            top = ranked[:k]
            if kind == "R":
                vals[name] = 1.0 if any(d in relevant for d in top) else 0.0
            elif kind == "MRR":
                vals[name] = next((1.0 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
            else:
                dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top))
                ideal = sorted(relevant.values(), reverse=True)[:k]
                idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
                vals[name] = dcg / idcg if idcg > 0 else 0.0
        out[qid] = vals
    return out


def evaluate(
    run: Mapping[str, Sequence[tuple[str, float]]], qrels: Qrels, metrics: Iterable[str] = DEFAULT_METRICS
) -> dict[str, float]:
    """Mean of each metric over the queries of ``qrels``, in percent."""
    metrics = list(metrics)
    if not qrels:
        raise InputError("qrels hold no query; nothing to evaluate")
    pq = per_query(run, qrels, metrics)
    return {m: 100.0 * sum(v[m] for v in pq.values()) / len(pq) for m in metrics}


def rsum(t2i: Mapping[str, float], i2t: Mapping[str, float]) -> float:
    """RSUM: R@1 + R@5 + R@10 of both directions."""
    return sum(t2i[f"R@{k}"] + i2t[f"R@{k}"] for k in (1, 5, 10))


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table: one row per system/direction."""
    if not rows:
        return ""
    cols = list(columns) if columns else list(next(iter(rows.values())).keys())
    width = max(len(r) for r in rows) + 2
    head = "".ljust(width) + "".join(c.rjust(10) for c in cols)
    lines = [head]
    for name, vals in rows.items():
        cells = []
        for c in cols:
            v = vals.get(c)
            cells.append(("-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)).rjust(10))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def overlap_at_k(
    run: Mapping[str, Sequence[tuple[str, float]]],
    exact: Mapping[str, Sequence[tuple[str, float]]],
    k: int = 10,
    exact_score: Mapping[str, Mapping[str, float]] | None = None,
) -> float:
    """Tie-aware overlap of an approximate run's top ``k`` with the exact top ``k``, in [0, 1].

    Per query: the share of the run's top ``k`` whose exact score reaches the exact ``k``-th score
    (a document tied with the exact ``k``-th is as right as the one the exact ranking kept), over
    ``min(k, len(exact list))``; averaged over the exact run's queries that have hits. The exact
    score of a hit is ``exact_score[qid][docid]`` where given (documents absent score 0), else the
    run's own score (for engines that score the documents they find exactly)."""
    vals = []
    for qid, want in exact.items():
        want = list(want)[:k]
        if not want:
            continue
        kth = want[-1][1]
        got = list(run.get(qid, ()))[:k]
        scores = exact_score.get(qid, {}) if exact_score is not None else None
        right = sum((scores.get(d, 0.0) if scores is not None else s) >= kth for d, s in got)
        vals.append(min(right, len(want)) / len(want))
    return sum(vals) / len(vals) if vals else 0.0
