"""TREC run and qrels files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexret.errors import InputError
from lexret.trec import read_qrels, read_run, write_qrels, write_run


def test_run_file_format(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run.txt"
    write_run(path, {"q1": [("d3", 12.5), ("d1", 3.0)], "q2": [("d9", 0.1234567)]}, tag="mytag")
    assert path.read_text().splitlines() == [
        "q1 Q0 d3 1 12.500000 mytag",
        "q1 Q0 d1 2 3.000000 mytag",
        "q2 Q0 d9 1 0.123457 mytag",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["run.txt"]  # no temporary file left
    assert read_run(path) == {"q1": [("d3", 12.5), ("d1", 3.0)], "q2": [("d9", 0.123457)]}


def test_default_tag_and_empty_hit_list(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    write_run(path, {"q1": [("d1", 1.0)], "q2": []})
    assert path.read_text() == "q1 Q0 d1 1 1.000000 lexret\n"
    assert read_run(path) == {"q1": [("d1", 1.0)]}


def test_read_run_sorts_by_score_then_written_rank(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    path.write_text(
        "q1 Q0 a 3 1.0 t\n"
        "q1 Q0 b 1 5.0 t\n"
        "\n"
        "q1 Q0 c 2 1.0 t\n"  # ties with a: rank 2 comes before rank 3
        "q2\tQ0\tx\t1\t-2\tt\n"  # tabs are whitespace too
    )
    assert read_run(path) == {"q1": [("b", 5.0), ("c", 1.0), ("a", 1.0)], "q2": [("x", -2.0)]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1 Q0 d1 1 1.0\n", "expected 6 fields"),
        ("q1 Q0 d1 1 1.0 tag extra\n", "expected 6 fields"),
        ("q1 Q0 d1 one 1.0 tag\n", "rank must be an integer"),
        ("q1 Q0 d1 1 high tag\n", "score a number"),
    ],
)
def test_malformed_run_lines(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "run.txt"
    path.write_text("q0 Q0 d0 1 2.0 tag\n" + content)
    with pytest.raises(InputError, match=message) as e:
        read_run(path)
    assert e.value.line == 2 and str(e.value).startswith(f"{path}:2: ")


def test_duplicate_document_in_run(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    path.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n")
    with pytest.raises(InputError, match="d1 appears twice for query q1"):
        read_run(path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run file not found"):
        read_run(tmp_path / "nope")
    with pytest.raises(InputError, match="qrels file not found"):
        read_qrels(tmp_path / "nope")


@pytest.mark.parametrize(("run", "tag"), [({"q 1": [("d", 1.0)]}, "t"), ({"": [("d", 1.0)]}, "t"), ({}, "a tag")])
def test_write_run_rejects_whitespace_tokens(tmp_path: Path, run, tag: str) -> None:
    with pytest.raises(InputError, match="whitespace"):
        write_run(tmp_path / "run.txt", run, tag=tag)
    assert not (tmp_path / "run.txt").exists()
    assert list(tmp_path.iterdir()) == []


def test_qrels_round_trip_and_format(tmp_path: Path) -> None:
    qrels = {"img1": {"c1": 1, "c2": 1, "c3": 0}, "img2": {"c9": 2}}
    path = tmp_path / "qrels.txt"
    write_qrels(path, qrels)
    assert path.read_text().splitlines() == ["img1 0 c1 1", "img1 0 c2 1", "img1 0 c3 0", "img2 0 c9 2"]
    assert read_qrels(path) == qrels


@pytest.mark.parametrize(
    ("content", "message"), [("q1 0 d1\n", "expected 4 fields"), ("q1 0 d1 yes\n", "relevance must be an integer")]
)
def test_malformed_qrels_lines(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qrels.txt"
    path.write_text("q0 0 d0 1\n\n" + content)
    with pytest.raises(InputError, match=message) as e:
        read_qrels(path)
    assert e.value.line == 3


def test_write_qrels_rejects_whitespace(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_qrels(tmp_path / "q.txt", {"q1": {"d 1": 1}})
    assert list(tmp_path.iterdir()) == []


TOKEN = st.text(st.characters(whitelist_categories=("L", "N", "Pd", "Pc")), min_size=1, max_size=6)


@st.composite
def runs(draw) -> dict[str, list[tuple[str, float]]]:
    qids = draw(st.lists(TOKEN, min_size=1, max_size=4, unique=True))
    run = {}
    for q in qids:
        docs = draw(st.lists(TOKEN, min_size=1, max_size=8, unique=True))
        # quarter steps print exactly with 6 decimals; ties are allowed and keep their order
        scores = sorted((draw(st.integers(-400, 400)) / 4 for _ in docs), reverse=True)
        run[q] = list(zip(docs, scores))
    return run


@given(runs())
def test_property_run_round_trip(tmp_path_factory: pytest.TempPathFactory, run) -> None:
    path = tmp_path_factory.mktemp("run") / "run.txt"
    write_run(path, run)
    assert read_run(path) == run


@given(st.dictionaries(TOKEN, st.dictionaries(TOKEN, st.integers(0, 3), min_size=1, max_size=5), max_size=4))
def test_property_qrels_round_trip(tmp_path_factory: pytest.TempPathFactory, qrels) -> None:
    path = tmp_path_factory.mktemp("qrels") / "qrels.txt"
    write_qrels(path, qrels)
    assert read_qrels(path) == qrels
