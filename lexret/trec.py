"""TREC run files (``qid Q0 docid rank score tag``), qrels (``qid 0 docid rel``) and the topic files
that stock Anserini reads for pre-encoded impact queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lexret.errors import InputError
from lexret.fileio import atomic_write

# A ranked result list per query id: [(docid, score), ...], best first.
Run = dict[str, list[tuple[str, float]]]
# Relevance per query id: {docid: grade}, grade > 0 means relevant.
Qrels = dict[str, dict[str, int]]


def _check_token(value: str, what: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise InputError(f"{what} {value!r} is empty or contains whitespace; TREC files are space separated")


def write_run(path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "lexret") -> None:
    """Write ``run`` atomically (temporary file, then rename); queries in insertion order."""
    write_run_chunks(path, [run], tag)


def write_run_chunks(
    path: str | Path, chunks: Iterable[Mapping[str, Sequence[tuple[str, float]]]], tag: str = "lexret"
) -> int:
    """Write a run that arrives chunk by chunk (memory stays bounded by one chunk); returns the
    number of queries. The file appears under ``path`` only once complete."""
    _check_token(tag, "run tag")
    n = 0
    with atomic_write(path) as f:
        for chunk in chunks:
            for qid, hits in chunk.items():
                _check_token(qid, "query id")
                f.writelines(
                    f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n" for rank, (docid, score) in enumerate(hits, start=1)
                )
                n += 1
    return n


def read_run(path: str | Path) -> Run:
    """Read a TREC run; hits are re-sorted by score (desc), then by rank as written."""
    path = Path(path)
    if not path.is_file():
        raise InputError("run file not found", path=str(path))
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InputError(
                    f"expected 6 fields `qid Q0 docid rank score tag`, found {len(parts)}", path=str(path), line=n
                )
            qid, _, docid, rank, score, _ = parts
            try:
                r, s = int(rank), float(score)
            except ValueError:
                raise InputError("rank must be an integer and score a number", path=str(path), line=n) from None
            rows.setdefault(qid, []).append((-s, r, docid))
    run: Run = {}
    for qid, hits in rows.items():
        hits.sort()
        seen: set[str] = set()
        out = []
        for neg_s, _, docid in hits:
            if docid in seen:
                raise InputError(f"document {docid} appears twice for query {qid}", path=str(path))
            seen.add(docid)
            out.append((docid, -neg_s))
        run[qid] = out
    return run


def write_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    with atomic_write(path) as f:
        for qid, docs in qrels.items():
            _check_token(qid, "query id")
            for docid, rel in docs.items():
                _check_token(docid, "document id")
                f.write(f"{qid} 0 {docid} {int(rel)}\n")


def read_qrels(path: str | Path) -> Qrels:
    """Read ``qid iter docid rel`` lines."""
    path = Path(path)
    if not path.is_file():
        raise InputError("qrels file not found", path=str(path))
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise InputError(
                    f"expected 4 fields `qid 0 docid relevance`, found {len(parts)}", path=str(path), line=n
                )
            try:
                rel = int(parts[3])
            except ValueError:
                raise InputError("relevance must be an integer", path=str(path), line=n) from None
            qrels.setdefault(parts[0], {})[parts[2]] = rel
    return qrels


def write_impact_topics(path: str | Path, qids: Sequence[str], queries: Iterable[Mapping[str, int]]) -> None:
    """Topics for stock Anserini's ``SearchCollection -topicReader TsvString -impact -pretokenized``:
    one ``qid<TAB>terms`` line per query, each term repeated as many times as its integer weight.

    Anserini's bag-of-words query generator adds one clause per token, so a term repeated ``w``
    times scores ``w x impact``: the same sum as lexret's ``sum(q_w * d_impact)``."""
    with atomic_write(path) as f:
        for qid, query in zip(qids, queries, strict=True):
            _check_token(qid, "query id")
            terms = []
            for term, w in query.items():
                _check_token(term, "query term")
                if int(w) != w or w < 0:
                    raise InputError(f"query {qid}: weight {w!r} of {term!r} is not a non-negative integer impact")
                terms.extend([term] * int(w))
            f.write(f"{qid}\t{' '.join(terms)}\n")
