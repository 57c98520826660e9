"""Bad-input handling and basics of lexret.data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from lexret.data import list_images, load_captions, load_image, preprocess_image, read_texts
from lexret.errors import InputError


def _img(path, mode="RGB", size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    im = Image.fromarray(arr).convert(mode)
    im.save(path)
    return path


def _write(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


@pytest.fixture
def coll(tmp_path):
    _img(tmp_path / "images" / "a.jpg")
    _img(tmp_path / "images" / "b.jpg")
    return tmp_path


def test_load_resolves_paths_and_splits(coll):
    f = _write(
        coll / "c.jsonl",
        [
            {"image": "images/a.jpg", "captions": ["a dog", " a cat "], "split": "train"},
            {"image": "images/b.jpg", "captions": ["a bird"], "split": "val"},
        ],
    )
    c = load_captions(f)
    assert len(c) == 2 and c.items[0].image == coll / "images" / "a.jpg"
    assert c.items[0].captions == ("a dog", "a cat")
    assert c.captions == ["a dog", "a cat", "a bird"] and c.caption_owner.tolist() == [0, 0, 1]
    assert [it.key for it in load_captions(f, split="val")] == ["images/b.jpg"]


@pytest.mark.parametrize(
    "line,needle",
    [
        ({"captions": ["x"]}, "missing field 'image'"),
        ({"image": "images/a.jpg"}, "missing field 'captions'"),
        ({"image": "images/a.jpg", "captions": ["ok", "  "]}, "caption 2 is empty"),
        ({"image": "images/a.jpg", "captions": []}, "non-empty list"),
        ({"image": "images/nope.jpg", "captions": ["x"]}, "not found"),
        ("{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(coll, line, needle):
    f = _write(coll / "c.jsonl", [{"image": "images/b.jpg", "captions": ["fine"]}, line])
    with pytest.raises(InputError) as e:
        load_captions(f)
    assert needle in str(e.value) and f"{f}:2:" in str(e.value)
    assert e.value.line == 2


def test_skip_reports_and_keeps_good(coll, caplog):
    f = _write(
        coll / "c.jsonl",
        [{"image": "images/a.jpg", "captions": ["fine"]}, {"image": "images/x.jpg", "captions": ["x"]}, "{bad"],
    )
    with caplog.at_level(logging.WARNING):
        c = load_captions(f, on_error="skip")
    assert len(c) == 1 and [n for n, _ in c.skipped] == [2, 3]
    assert "skipped 2 bad items" in caplog.text


def test_all_bad_is_an_error(coll):
    f = _write(coll / "c.jsonl", ["{bad"])
    with pytest.raises(InputError, match="no usable items"):
        load_captions(f, on_error="skip")
    with pytest.raises(InputError, match="not found"):
        load_captions(coll / "missing.jsonl")


def test_truncated_jpeg_raises(coll):
    p = coll / "images" / "a.jpg"
    data = p.read_bytes()
    t = coll / "trunc.jpg"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or unreadable"):
        load_image(t)
    junk = coll / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="not an image"):
        load_image(junk)
    with pytest.raises(InputError, match="not found"):
        load_image(coll / "none.jpg")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_non_rgb_is_converted(tmp_path, mode):
    p = _img(tmp_path / f"x_{mode}.{'jpg' if mode in ('L', 'CMYK') else 'png'}", mode)
    im = load_image(p)
    assert im.mode == "RGB"
    x = preprocess_image(im)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and np.isfinite(x).all()


def test_preprocess_normalises():
    white = Image.new("RGB", (224, 224), (255, 255, 255))
    x = preprocess_image(white)
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 1.0, 1.0], rtol=1e-6)
    black = preprocess_image(Image.new("RGB", (300, 200)))
    assert black.shape == (3, 224, 224) and np.allclose(black, -127 / 128)


def test_list_images_and_read_texts(coll, tmp_path):
    assert [p.name for p in list_images(coll)] == ["a.jpg", "b.jpg"]
    t = tmp_path / "q.txt"
    t.write_text("a dog\n\na cat\n")
    assert read_texts(t) == (["1", "3"], ["a dog", "a cat"])
    j = _write(tmp_path / "q.jsonl", [{"id": "q1", "text": "a dog"}, {"text": "a cat"}, {"id": "q3", "text": ""}])
    with pytest.raises(InputError, match="q.jsonl:3: missing or empty 'text'"):
        read_texts(j)
    assert read_texts(j, on_error="skip") == (["q1", "2"], ["a dog", "a cat"])
