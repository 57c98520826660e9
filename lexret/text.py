"""Wordpieces of captions, for judging whether an item's terms mean something.

``term_precision@10`` asks how many of an image's top terms occur among the wordpieces of its own
captions; stopwords and punctuation carry no content and are excluded from both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

# English function words (articles, pronouns, prepositions, auxiliaries, conjunctions) plus the
# wordpiece specials (see is_content_term); a caption's content is what is left.
STOPWORDS: frozenset[str] = frozenset(
    (
        "a an the and or but nor so yet for of in on at to from by with without into onto over under above "
        "below up down out off about against between through during before after around near behind beside "
        "across along while as than then there here this that these those it its it's he him his she her hers "
        "they them their theirs we us our ours you your yours i me my mine is are was were be been being am "
        "do does did doing have has had having will would can could shall should may might must not no yes "
        "very too also just only some any each every all both few more most other such own same what which "
        "who whom whose when where why how one two s t 's"
    ).split()
)


def is_content_term(term: str) -> bool:
    """True for a wordpiece that names something: not a stopword, not punctuation or a special."""
    if term.startswith("[") and term.endswith("]"):
        return False
    bare = term[2:] if term.startswith("##") else term
    return any(c.isalnum() for c in bare) and term not in STOPWORDS


@cache
def _tokenizer():
    from tokenizers import Tokenizer

    from lexret.vocab import default_vocab_path

    return Tokenizer.from_file(str(default_vocab_path().parent / "tokenizer.json"))


def content_wordpieces(texts: Iterable[str]) -> set[str]:
    """The content wordpieces of ``texts`` under the bert-base-uncased tokenizer."""
    tok = _tokenizer()
    out: set[str] = set()
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        out.update(t for t in enc.tokens if is_content_term(t))
    return out
