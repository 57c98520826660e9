"""Which vocabulary terms a lexical head may emit (content wordpieces of the training captions).

The emission filter uses NLTK's stopwords; term precision uses ``lexret.text`` (a stricter list that
also drops numbers and spatial words) in training and in ``lexret eval`` alike."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

# NLTK's English stopword list (public domain), plus a few caption fillers.
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are
    was were be been being have has had having do does did doing a an the and but if or because as until while
    of at by for with about against between into through during before after above below to from up down in out
    on off over under again further then once here there when where why how all any both each few more most other
    some such no nor not only own same so than too very s t can will just don should now d ll m o re ve y ain
    aren couldn didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn""".split()
)

_ALNUM = re.compile(r"[a-z0-9]")


def is_content_term(tok: str) -> bool:
    """A term that can carry meaning: not special, not unused, not punctuation, not a stopword."""
    if tok.startswith("[") and tok.endswith("]"):
        return False
    core = tok[2:] if tok.startswith("##") else tok
    if not _ALNUM.search(core):
        return False
    return tok not in STOPWORDS


def content_mask(tokens: Sequence[str]) -> np.ndarray:
    return np.array([is_content_term(t) for t in tokens], dtype=bool)


def active_terms(token_ids: Iterable[np.ndarray], tokens: Sequence[str], min_count: int = 1) -> np.ndarray:
    """Sorted ids of content terms occurring at least ``min_count`` times in ``token_ids``."""
    counts = np.zeros(len(tokens), dtype=np.int64)
    for ids in token_ids:
        ids = np.asarray(ids).ravel()
        counts += np.bincount(ids[ids > 0], minlength=len(tokens))
    keep = (counts >= min_count) & content_mask(tokens)
    return np.nonzero(keep)[0].astype(np.int64)
