"""Evaluation pieces: ids and qrels of the 5-captions protocol, term precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lexret.data import Collection, Item
from lexret.evaluation import SplitIds, item_id, term_precision_at_10
from lexret.text import content_wordpieces, is_content_term
from lexret.types import SparseBatch


def _coll() -> Collection:
    items = [
        Item(Path("a.jpg"), ("A black dog runs on the grass.", "A dog outside."), key="imgs/a b.jpg"),
        Item(Path("b.jpg"), ("Two children play football.",), key="imgs/c.jpg"),
    ]
    return Collection(Path("captions.jsonl"), items)


def test_ids_and_qrels_follow_the_protocol():
    ids = SplitIds.from_collection(_coll())
    assert ids.image_ids == ["imgs/a%20b.jpg", "imgs/c.jpg"]  # no whitespace in run files
    assert ids.caption_ids == ["imgs/a%20b.jpg#0", "imgs/a%20b.jpg#1", "imgs/c.jpg#0"]
    assert ids.qrels_t2i() == {
        "imgs/a%20b.jpg#0": {"imgs/a%20b.jpg": 1},
        "imgs/a%20b.jpg#1": {"imgs/a%20b.jpg": 1},
        "imgs/c.jpg#0": {"imgs/c.jpg": 1},
    }
    assert ids.qrels_i2t() == {
        "imgs/a%20b.jpg": {"imgs/a%20b.jpg#0": 1, "imgs/a%20b.jpg#1": 1},
        "imgs/c.jpg": {"imgs/c.jpg#0": 1},
    }
    assert item_id("x\ty") == "x%20y"


def test_content_terms_exclude_stopwords_punctuation_and_specials():
    assert is_content_term("dog") and is_content_term("##ing")
    assert not is_content_term("the") and not is_content_term(".") and not is_content_term("[CLS]")
    words = content_wordpieces(["A black dog is running through the grass."])
    assert words == {"black", "dog", "running", "grass"}


def test_term_precision_counts_caption_words_among_top_terms(vocab):
    coll = _coll()
    # image 0: dog, grass (in its captions), car (not) + stopword "the" (ignored); image 1: football, cat
    rows = [
        (np.array(vocab.ids(["dog", "grass", "car", "the"])), np.array([3.0, 2.0, 1.0, 5.0])),
        (np.array(vocab.ids(["football", "cat"])), np.array([2.0, 1.0])),
    ]
    batch = SparseBatch.from_rows(rows, len(vocab))
    tp = term_precision_at_10(batch, coll, vocab.tokens)
    assert abs(tp - (100 * 2 / 3 + 100 * 1 / 2) / 2) < 1e-9


def test_caption_query_postings_scales_to_a_million_images() -> None:
    from lexret.evaluation import caption_query_postings

    images = SparseBatch.from_rows([(np.array([1, 2]), np.ones(2)), (np.array([2]), np.ones(1))], 4)
    caps = SparseBatch.from_rows([(np.array([2]), np.ones(1)), (np.array([1, 3]), np.ones(2))], 4)
    got = caption_query_postings(images, caps)
    assert got["postings_per_query"] == 1.5  # (2 + 1) / 2
    assert got["postings_per_query_per_1m"] == 1.5 * 1e6 / 2
