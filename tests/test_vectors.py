"""Vector files: JSONL and .npz round trips, sidecar metadata, streaming, and error reporting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexret.errors import InputError
from lexret.types import SparseBatch
from lexret.vectors import iter_vectors, meta_path, read_meta, read_vectors, write_vectors
from lexret.vocab import Vocabulary

TERMS = ["dog", "##s", "[unused5]", "cat", "run", "##ning", "[CLS]", "ß"]


def as_dicts(b: SparseBatch, vocab: Vocabulary) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in d.items()} for d in b.to_dicts(vocab)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def line(docid, vector) -> str:
    return json.dumps({"id": docid, "vector": vector})


@pytest.fixture(scope="module")
def float_batch(vocab: Vocabulary) -> SparseBatch:
    return SparseBatch.from_dicts(
        [{"dog": 0.25, "##s": 1.5, "[unused5]": 0.1}, {"cat": 2.75}, {}, {"run": 0.3, "##ning": 3.1, "ß": 0.7}],
        vocab,
    )


@pytest.fixture(scope="module")
def int_batch(vocab: Vocabulary) -> SparseBatch:
    return SparseBatch.from_dicts(
        [{"dog": 25, "##s": 150}, {"[unused5]": 1, "cat": 999}, {"[CLS]": 7}], vocab, dtype=np.int32
    )


# ----- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".npz"])
def test_float_round_trip(tmp_path: Path, vocab: Vocabulary, float_batch: SparseBatch, suffix: str) -> None:
    path = tmp_path / f"docs{suffix}"
    ids = ["a", "b", "empty", "d-4"]
    write_vectors(path, ids, float_batch, vocab, meta={"model_id": "m/1", "modality": "image"})
    vs = read_vectors(path, vocab)
    assert vs.ids == ids and len(vs) == 4
    assert not vs.batch.is_integer
    assert vs.batch.dim == len(vocab)
    assert as_dicts(vs.batch, vocab) == as_dicts(float_batch, vocab)
    assert np.array_equal(vs.batch.values, float_batch.values)  # float32 survives exactly
    assert vs.meta["model_id"] == "m/1" and vs.meta["modality"] == "image"
    assert vs.meta["vocab_hash"] == vocab.hash
    assert vs.skipped == []


@pytest.mark.parametrize("suffix", [".jsonl", ".npz"])
def test_int_round_trip(tmp_path: Path, vocab: Vocabulary, int_batch: SparseBatch, suffix: str) -> None:
    path = tmp_path / f"docs{suffix}"
    write_vectors(path, ["x", "y", "z"], int_batch, vocab)
    vs = read_vectors(path, vocab)
    assert vs.ids == ["x", "y", "z"]
    assert vs.batch.is_integer
    assert vs.batch.to_dicts(vocab) == [{"dog": 25, "##s": 150}, {"[unused5]": 1, "cat": 999}, {"[CLS]": 7}]


def test_jsonl_layout(tmp_path: Path, vocab: Vocabulary, float_batch: SparseBatch) -> None:
    path = tmp_path / "docs.jsonl"
    write_vectors(path, ["a", "b", "c", "d"], float_batch, vocab)
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"id": "a", "vector": {"dog": 0.25, "##s": 1.5, "[unused5]": pytest.approx(0.1)}}
    assert rows[2] == {"id": "c", "vector": {}}
    assert "ß" in path.read_text(encoding="utf-8")  # written as UTF-8, not escaped
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sidecar_meta(tmp_path: Path, vocab: Vocabulary, float_batch: SparseBatch) -> None:
    path = tmp_path / "q.jsonl"
    assert meta_path(path) == tmp_path / "q.jsonl.meta.json"
    assert read_meta(path) == {}
    write_vectors(path, ["a", "b", "c", "d"], float_batch, vocab, meta={"model_id": "enc-7"})
    assert json.loads(meta_path(path).read_text()) == {"model_id": "enc-7", "vocab_hash": vocab.hash}
    assert read_meta(path) == {"model_id": "enc-7", "vocab_hash": vocab.hash}
    meta_path(path).write_text("{not json")
    with pytest.raises(InputError, match="meta.json"):
        read_meta(path)
    meta_path(path).write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        read_meta(path)


def test_write_vectors_argument_checks(tmp_path: Path, vocab: Vocabulary, float_batch: SparseBatch) -> None:
    with pytest.raises(InputError, match="ids"):
        write_vectors(tmp_path / "a.jsonl", ["a"], float_batch, vocab)
    with pytest.raises(InputError, match="whitespace"):
        write_vectors(tmp_path / "a.jsonl", ["a", "b c", "d", "e"], float_batch, vocab)
    with pytest.raises(InputError, match="unique"):
        write_vectors(tmp_path / "a.jsonl", ["a", "b", "a", "e"], float_batch, vocab)
    with pytest.raises(ValueError, match="vocabulary"):
        write_vectors(tmp_path / "a.jsonl", ["a", "b", "c", "d"], float_batch, Vocabulary(TERMS))
    assert not (tmp_path / "a.jsonl").exists()


def test_npz_with_other_vocabulary_is_refused(tmp_path: Path, vocab: Vocabulary) -> None:
    small = Vocabulary(TERMS)
    path = tmp_path / "v.npz"
    write_vectors(path, ["a"], SparseBatch.from_dicts([{"dog": 1.0}], small), small)
    with pytest.raises(InputError, match="vocabulary"):
        read_vectors(path, vocab)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="junk.npz"):
        read_vectors(tmp_path / "junk.npz", vocab)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["a b", "c"], r"id 'a b' \(item 1\) is empty or contains whitespace"),
        (["a", "b\tc"], "contains whitespace"),
        (["a", ""], r"id '' \(item 2\) is empty"),
        (["x", "x"], "id 'x' of item 2 already used by item 1"),
    ],
)
def test_npz_ids_follow_the_jsonl_rules(tmp_path: Path, vocab: Vocabulary, ids: list[str], message: str) -> None:
    # ids that would corrupt a space-separated run file are refused in .npz files as in JSONL
    path = tmp_path / "v.npz"
    b = SparseBatch.from_dicts([{"dog": 1.0}, {"cat": 2.0}], vocab)
    with pytest.raises(InputError, match=message):  # the writer refuses them too
        write_vectors(path, ids, b, vocab)
    np.savez(path, ids=np.array(ids), indptr=b.indptr, indices=b.indices, values=b.values, dim=np.array(b.dim),
             meta=np.array("{}"))  # fmt: skip
    with pytest.raises(InputError, match=message) as e:
        read_vectors(path, vocab)
    assert str(e.value).startswith(f"{path}: ")
    with pytest.raises(InputError, match=message):
        list(iter_vectors(path, vocab))


def test_npz_with_ids_and_vectors_of_different_length(tmp_path: Path, vocab: Vocabulary) -> None:
    b = SparseBatch.from_dicts([{"dog": 1.0}, {"cat": 2.0}], vocab)
    path = tmp_path / "v.npz"
    np.savez(path, ids=np.array(["a"]), indptr=b.indptr, indices=b.indices, values=b.values, dim=np.array(b.dim),
             meta=np.array("{}"))  # fmt: skip
    with pytest.raises(InputError, match="1 ids for 2 vectors"):
        read_vectors(path, vocab)


@pytest.mark.parametrize("suffix", [".jsonl", ".npz"])
def test_streaming_chunks(tmp_path: Path, vocab: Vocabulary, suffix: str) -> None:
    n = 7
    b = SparseBatch.from_dicts([{TERMS[i % len(TERMS)]: 0.5 + i} for i in range(n)], vocab)
    ids = [f"d{i}" for i in range(n)]
    path = tmp_path / f"s{suffix}"
    write_vectors(path, ids, b, vocab)
    chunks = list(iter_vectors(path, vocab, chunk_size=3))
    assert [len(c_ids) for c_ids, _ in chunks] == [3, 3, 1]
    assert all(len(c_ids) == len(c) for c_ids, c in chunks)
    assert [i for c_ids, _ in chunks for i in c_ids] == ids
    joined = SparseBatch.concat([c for _, c in chunks])
    assert as_dicts(joined, vocab) == as_dicts(b, vocab)


def test_blank_lines_are_ignored_and_line_numbers_kept(tmp_path: Path, vocab: Vocabulary) -> None:
    path = write_lines(tmp_path / "v.jsonl", [line("a", {"dog": 1.5}), "", "   ", line("b", {"cat": 0.5}), "{"])
    with pytest.raises(InputError) as e:
        read_vectors(path, vocab)
    assert e.value.line == 5
    path = write_lines(tmp_path / "w.jsonl", [line("a", {"dog": 1.5}), "", line("b", {"cat": 0.5})])
    assert read_vectors(path, vocab).ids == ["a", "b"]


def test_integer_ids_become_strings(tmp_path: Path, vocab: Vocabulary) -> None:
    path = write_lines(tmp_path / "v.jsonl", [line(17, {"dog": 1.5}), line("18", {"cat": 0.5})])
    assert read_vectors(path, vocab).ids == ["17", "18"]


# ----- errors name the file and line ------------------------------------------------------------


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ('["a", {"dog": 1}]', "JSON object"),
    ('{"vector": {"dog": 1}}', "missing field id"),
    ('{"id": "x"}', "missing field vector"),
    ('{"id": ["x"], "vector": {"dog": 1}}', "id must be a string"),
    ('{"id": true, "vector": {"dog": 1}}', "id must be a string"),
    ('{"id": "two words", "vector": {"dog": 1}}', "whitespace"),
    ('{"id": "", "vector": {"dog": 1}}', "empty"),
    ('{"id": "x", "vector": [["dog", 1]]}', "vector must be an object"),
    ('{"id": "x", "vector": {"dog": "1.5"}}', "must be a number"),
    ('{"id": "x", "vector": {"dog": true}}', "must be a number"),
    ('{"id": "x", "vector": {"dog": NaN}}', "must be finite"),
    ('{"id": "x", "vector": {"dog": Infinity}}', "must be finite"),
    ('{"id": "x", "vector": {"dog": -Infinity}}', "must be finite"),
    ('{"id": "x", "vector": {"dog": 1e12}}', "beyond any sensible"),
    ('{"id": "x", "vector": {"zebrafish": 1.0}}', "not in the vocabulary"),
    ('{"id": "x", "vector": {"Dog": 1.0}}', "not in the vocabulary"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LINES)
def test_bad_line_names_file_and_line(tmp_path: Path, vocab: Vocabulary, bad: str, message: str) -> None:
    path = write_lines(tmp_path / "v.jsonl", [line("a", {"dog": 1.0}), line("b", {"cat": 2.0}), bad])
    with pytest.raises(InputError) as e:
        read_vectors(path, vocab)
    assert e.value.path == str(path) and e.value.line == 3
    assert str(e.value).startswith(f"{path}:3: ")
    assert message in str(e.value)


def test_duplicate_id_names_both_lines(tmp_path: Path, vocab: Vocabulary) -> None:
    path = write_lines(tmp_path / "v.jsonl", [line("a", {"dog": 1}), line("b", {"cat": 1}), line("a", {"run": 1})])
    with pytest.raises(InputError, match=r"v\.jsonl:3: id 'a' already used on line 1"):
        read_vectors(path, vocab)


def test_duplicate_id_across_chunks(tmp_path: Path, vocab: Vocabulary) -> None:
    path = write_lines(tmp_path / "v.jsonl", [line(f"d{i}", {"dog": 1}) for i in range(5)] + [line("d1", {"cat": 1})])
    with pytest.raises(InputError, match="already used on line 2"):
        list(iter_vectors(path, vocab, chunk_size=2))


def test_empty_file(tmp_path: Path, vocab: Vocabulary) -> None:
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no vectors") as e:
        read_vectors(tmp_path / "e.jsonl", vocab)
    assert str(tmp_path / "e.jsonl") in str(e.value)
    (tmp_path / "blank.jsonl").write_text("\n\n  \n")
    with pytest.raises(InputError, match="holds no vectors"):
        read_vectors(tmp_path / "blank.jsonl", vocab)


def test_directory_and_missing_paths(tmp_path: Path, vocab: Vocabulary) -> None:
    with pytest.raises(InputError, match="is a directory") as e:
        read_vectors(tmp_path, vocab)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(InputError, match="not found") as e:
        read_vectors(tmp_path / "missing.jsonl", vocab)
    assert "missing.jsonl" in str(e.value)
    with pytest.raises(InputError, match="not found"):
        read_vectors(tmp_path / "missing.npz", vocab)


def test_on_error_skip_keeps_good_lines_and_reports_bad_ones(
    tmp_path: Path, vocab: Vocabulary, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_lines(
        tmp_path / "v.jsonl",
        [
            line("a", {"dog": 1.5}),
            "{broken",
            line("b", {"##s": 0.5, "[unused5]": 2.0}),
            line("a", {"cat": 1.0}),  # duplicate: the first one stays
            line("c", {"nope-not-a-term": 1.0}),
            line("d", {"cat": 0.25}),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="lexret.vectors"):
        vs = read_vectors(path, vocab, on_error="skip")
    assert vs.ids == ["a", "b", "d"]
    assert as_dicts(vs.batch, vocab) == [{"dog": 1.5}, {"##s": 0.5, "[unused5]": 2.0}, {"cat": 0.25}]
    assert [n for n, _ in vs.skipped] == [2, 4, 5]
    assert all(reason.startswith(f"{path}:{n}: ") for n, reason in vs.skipped)
    assert "already used on line 1" in vs.skipped[1][1]
    assert "skipped 3 bad line(s)" in caplog.text
    # and "stop" raises on the first of them
    with pytest.raises(InputError) as e:
        read_vectors(path, vocab, on_error="stop")
    assert e.value.line == 2


def test_on_error_skip_with_nothing_good_still_fails(tmp_path: Path, vocab: Vocabulary) -> None:
    path = write_lines(tmp_path / "v.jsonl", ["{", "[]"])
    with pytest.raises(InputError, match="holds no vectors"):
        read_vectors(path, vocab, on_error="skip")


def test_iter_vectors_skip_collects_reasons(tmp_path: Path, vocab: Vocabulary) -> None:
    path = write_lines(tmp_path / "v.jsonl", [line("a", {"dog": 1}), line("b", {"dog": "x"}), line("c", {"cat": 2})])
    skipped: list[tuple[int, str]] = []
    chunks = list(iter_vectors(path, vocab, on_error="skip", skipped=skipped))
    assert [i for ids, _ in chunks for i in ids] == ["a", "c"]
    assert [n for n, _ in skipped] == [2]


# ----- property ------------------------------------------------------------------------------

ID_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))


@st.composite
def vector_sets(draw) -> tuple[list[str], SparseBatch, bool]:
    vocab = Vocabulary(TERMS)
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.text(ID_CHARS, min_size=1, max_size=8), min_size=n, max_size=n, unique=True))
    ids = [i for i in ids if not any(c.isspace() for c in i)]
    if not ids:
        ids = ["fallback"]
    use_int = draw(st.booleans())
    rows = []
    for _ in ids:
        idx = sorted(draw(st.sets(st.integers(0, len(vocab) - 1), max_size=len(vocab))))
        if use_int:
            vals = [draw(st.integers(1, 10**6)) for _ in idx]
        else:
            vals = [draw(st.floats(-100, 100, width=32, allow_subnormal=False).filter(bool)) for _ in idx]
        rows.append((np.array(idx, dtype=np.int64), np.array(vals)))
    return ids, SparseBatch.from_rows(rows, len(vocab), dtype=np.int32 if use_int else np.float32), use_int


@given(vector_sets(), st.sampled_from([".jsonl", ".npz"]))
def test_property_round_trip(tmp_path_factory: pytest.TempPathFactory, data, suffix: str) -> None:
    ids, batch, use_int = data
    vocab = Vocabulary(TERMS)
    path = tmp_path_factory.mktemp("rt") / f"v{suffix}"
    write_vectors(path, ids, batch, vocab, meta={"model_id": "h"})
    vs = read_vectors(path, vocab)
    assert vs.ids == ids
    assert np.array_equal(vs.batch.indptr, batch.indptr)
    assert np.array_equal(vs.batch.indices, batch.indices)
    assert np.array_equal(vs.batch.values.astype(np.float64), batch.values.astype(np.float64))
    if use_int:
        assert vs.batch.is_integer
    assert vs.meta["model_id"] == "h"
