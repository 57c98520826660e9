"""Retrieval metrics: hand-computed cases for the 5-captions-per-image protocol, and ranx agreement."""

from __future__ import annotations

import math
import random
import warnings

import pytest

from lexret.errors import InputError
from lexret.metrics import DEFAULT_METRICS, evaluate, format_table, per_query, rsum

GALLERY = [f"img{i}" for i in range(12)]


def ranking_with(target: str, rank: int | None, gallery: list[str]) -> list[tuple[str, float]]:
    """The gallery ranked so that ``target`` sits at ``rank`` (1-based; None: left out)."""
    others = [g for g in gallery if g != target]
    ranked = others[:] if rank is None else others[: rank - 1] + [target] + others[rank - 1 :]
    return [(d, float(len(ranked) - i)) for i, d in enumerate(ranked)]


def test_text_to_image_one_relevant_image_per_caption() -> None:
    # 10 captions: 5 of img0 and 5 of img1; the rank at which each caption finds its image
    ranks = {
        "img0#0": 1,
        "img0#1": 1,
        "img0#2": 2,
        "img0#3": 3,
        "img0#4": 5,
        "img1#0": 6,
        "img1#1": 10,
        "img1#2": 11,
        "img1#3": None,  # the image is not retrieved at all
        "img1#4": 1,
    }
    qrels = {cap: {cap.split("#")[0]: 1} for cap in ranks}
    run = {cap: ranking_with(cap.split("#")[0], r, GALLERY) for cap, r in ranks.items()}
    m = evaluate(run, qrels)
    assert set(m) == set(DEFAULT_METRICS)
    assert m["R@1"] == pytest.approx(30.0)
    assert m["R@5"] == pytest.approx(60.0)
    assert m["R@10"] == pytest.approx(80.0)
    mrr = (1 + 1 + 1 / 2 + 1 / 3 + 1 / 5 + 1 / 6 + 1 / 10 + 0 + 0 + 1) / 10
    assert m["MRR@10"] == pytest.approx(100 * mrr)
    assert m["MRR@10"] == pytest.approx(43.0)
    # a single relevant item: nDCG = 1 / log2(rank + 1)
    ndcg = (1 + 1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(6) + 1 / math.log2(7) + 1 / math.log2(11) + 1) / 10
    assert m["nDCG@10"] == pytest.approx(100 * ndcg)
    assert m["nDCG@10"] == pytest.approx(51.6305, abs=1e-4)


def test_image_to_text_any_of_five_captions_is_a_hit() -> None:
    captions = [f"c{i}" for i in range(30)]
    qrels = {
        "imgA": {f"c{i}": 1 for i in range(5)},  # c0..c4
        "imgB": {f"c{i}": 1 for i in range(5, 10)},  # c5..c9
        "imgC": {f"c{i}": 1 for i in range(10, 15)},  # c10..c14
    }
    others = [c for c in captions if int(c[1:]) >= 15]  # never relevant
    run = {
        # imgA: relevant captions at ranks 2, 3 and 7
        "imgA": ["c20", "c3", "c0", "c21", "c22", "c23", "c4", "c24", "c25", "c26", "c1"],
        # imgB: relevant at rank 1, then only at rank 12 (beyond the cut-off)
        "imgB": ["c9"] + others[:10] + ["c5"],
        # imgC: first relevant caption at rank 6
        "imgC": others[:5] + ["c14", "c13"],
    }
    run = {q: [(d, 100.0 - i) for i, d in enumerate(docs)] for q, docs in run.items()}
    pq = per_query(run, qrels)
    assert pq["imgA"]["R@1"] == 0 and pq["imgA"]["R@5"] == 1 and pq["imgA"]["R@10"] == 1
    assert pq["imgB"]["R@1"] == 1
    assert pq["imgC"]["R@5"] == 0 and pq["imgC"]["R@10"] == 1
    assert pq["imgA"]["MRR@10"] == pytest.approx(1 / 2)
    assert pq["imgC"]["MRR@10"] == pytest.approx(1 / 6)
    idcg = sum(1 / math.log2(i + 2) for i in range(5))  # five relevant captions
    assert pq["imgA"]["nDCG@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(8)) / idcg)
    assert pq["imgB"]["nDCG@10"] == pytest.approx(1 / idcg)
    assert pq["imgC"]["nDCG@10"] == pytest.approx((1 / math.log2(7) + 1 / math.log2(8)) / idcg)
    m = evaluate(run, qrels)
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["R@5"] == pytest.approx(200 / 3)
    assert m["R@10"] == pytest.approx(100.0)
    assert m["MRR@10"] == pytest.approx(100 * (1 / 2 + 1 + 1 / 6) / 3)


def test_graded_ndcg_uses_linear_gain() -> None:
    qrels = {"q": {"a": 2, "b": 1, "z": 0}}
    run = {"q": [("z", 3.0), ("b", 2.0), ("a", 1.0)]}
    dcg = 0 + 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 + 1 / math.log2(3)
    assert per_query(run, qrels, ["nDCG@10"])["q"]["nDCG@10"] == pytest.approx(dcg / idcg)
    # grade 0 is not relevant: z at rank 1 is no hit
    assert per_query(run, qrels, ["R@1", "MRR@10"])["q"] == {"R@1": 0.0, "MRR@10": 0.5}


def test_query_without_relevant_documents_scores_zero_and_counts() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
    run = {"q1": [("a", 1.0)], "q2": [("b", 1.0)]}
    assert evaluate(run, qrels, ["R@1", "nDCG@10"]) == {"R@1": 50.0, "nDCG@10": 50.0}


def test_run_queries_outside_qrels_are_ignored() -> None:
    qrels = {"q1": {"a": 1}}
    run = {"q1": [("a", 1.0)], "other": [("x", 1.0)]}
    assert evaluate(run, qrels, ["R@1"]) == {"R@1": 100.0}


def test_cut_off_applies() -> None:
    qrels = {"q": {"d5": 1}}
    run = {"q": [(f"d{i}", 10.0 - i) for i in range(10)]}  # d5 at rank 6
    assert per_query(run, qrels, ["R@5", "R@6", "MRR@5", "MRR@10", "nDCG@5"])["q"] == pytest.approx(
        {"R@5": 0.0, "R@6": 1.0, "MRR@5": 0.0, "MRR@10": 1 / 6, "nDCG@5": 0.0}
    )


@pytest.mark.parametrize("name", ["P@10", "R@0", "R10", "R@x", "ndcg@10", "MRR@-1"])
def test_unknown_metric(name: str) -> None:
    with pytest.raises(InputError, match="unknown metric"):
        evaluate({"q": []}, {"q": {"a": 1}}, [name])


def test_empty_qrels() -> None:
    with pytest.raises(InputError, match="no query"):
        evaluate({"q": [("a", 1.0)]}, {})


def test_rsum_and_table() -> None:
    t2i = {"R@1": 10.0, "R@5": 20.0, "R@10": 30.0}
    i2t = {"R@1": 1.0, "R@5": 2.0, "R@10": 3.5}
    assert rsum(t2i, i2t) == pytest.approx(66.5)
    table = format_table({"sys-a": {"R@1": 12.345, "R@5": 50.0}, "b": {"R@1": 1.0}}, ["R@1", "R@5"])
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["R@1", "R@5"]
    assert lines[1].split() == ["sys-a", "12.35", "50.00"]
    assert lines[2].split() == ["b", "1.00", "-"]
    assert format_table({}) == ""


# ----- agreement with ranx ------------------------------------------------------------------


def random_case(seed: int, n_queries: int = 40, n_docs: int = 60):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        qrels[qid] = {d: rng.choice([1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 6))}
        hits = rng.sample(docs, rng.randint(1, 25))
        scores = rng.sample(range(1, 10_000), len(hits))  # distinct scores: no tie-order ambiguity
        run[qid] = sorted(zip(hits, map(float, scores)), key=lambda x: -x[1])
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx(seed: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ranx import Qrels, Run
        from ranx import evaluate as ranx_evaluate

        qrels, run = random_case(seed)
        ours = evaluate(run, qrels, ["R@1", "R@5", "R@10", "MRR@10", "nDCG@10"])
        theirs = ranx_evaluate(
            Qrels(qrels),
            Run({q: dict(hits) for q, hits in run.items()}),
            ["hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10", "ndcg@10"],
        )
    assert 0 < ours["R@10"] < 100  # a non-trivial case
    for mine, ranx_name in [
        ("R@1", "hit_rate@1"),
        ("R@5", "hit_rate@5"),
        ("R@10", "hit_rate@10"),
        ("MRR@10", "mrr@10"),
        ("nDCG@10", "ndcg@10"),
    ]:
        assert ours[mine] == pytest.approx(100 * float(theirs[ranx_name]), abs=1e-9), mine
