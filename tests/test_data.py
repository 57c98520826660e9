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
    j = _write(tmp_path / "q.jsonl", [{"id": "q1", "text": "a dog"}, {"text": "a cat"}, {"id": "q3", "title": "x"}])
    with pytest.raises(InputError, match="q.jsonl:3: 'text' is missing"):
        read_texts(j)
    assert read_texts(j, on_error="skip") == (["q1", "2"], ["a dog", "a cat"])
    j = _write(tmp_path / "q.jsonl", [{"id": "q1", "text": 5}])
    with pytest.raises(InputError, match=r"q.jsonl:1: 'text' is not a string \(int\)"):
        read_texts(j)


def test_empty_jsonl_texts_are_kept(tmp_path):
    """An explicit empty or blank text is an item (it encodes to an empty vector), never dropped."""
    j = _write(tmp_path / "q.jsonl", [{"id": "a", "text": ""}, {"id": "b", "text": " \t "}, {"id": "c", "text": "x"}])
    assert read_texts(j) == (["a", "b", "c"], ["", "", "x"])


# ----- hostile images ---------------------------------------------------------------------------

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _pixels(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img)


def _check_model_input(img: Image.Image) -> np.ndarray:
    x = preprocess_image(img)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= -127 / 128 - 1e-6 and x.max() <= 1 + 1e-6
    return x


def png_header(path, width: int, height: int):
    """A PNG that declares ``width x height`` (8-bit grey) with one empty data chunk: cheap to write,
    enough for PIL to read the size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def test_unusable_image_paths_name_the_file_and_the_fix(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("these are not the pixels you are looking for\n")
    (tmp_path / "folder.jpg").mkdir()
    png_header(tmp_path / "damaged.png", 50, 40)  # a valid header, no pixel data
    cases = {
        "empty.jpg": "is an empty file (0 bytes); replace or remove it",
        "text.jpg": "is not an image PIL can read",
        "folder.jpg": "is a directory, not an image file",
        "missing.jpg": "not found; check the path",
        "damaged.png": "is truncated or unreadable",
    }
    for name, needle in cases.items():
        with pytest.raises(InputError) as e:
            load_image(tmp_path / name)
        assert needle in str(e.value) and str(tmp_path / name) in str(e.value)
        # listed in a captions file: the message starts with that file and line, and still names the image
        with pytest.raises(InputError) as e:
            load_image(tmp_path / name, path="captions.jsonl", line=7)
        assert str(e.value).startswith("captions.jsonl:7: ") and name in str(e.value) and needle in str(e.value)
        assert e.value.path == "captions.jsonl" and e.value.line == 7


def test_truncated_jpeg_says_what_to_do(tmp_path):
    p = _img(tmp_path / "a.jpg", size=(320, 240))
    t = tmp_path / "cut.jpg"
    t.write_bytes(p.read_bytes()[:600])
    with pytest.raises(InputError, match=r"cut\.jpg: is truncated or unreadable .*re-download or re-export it"):
        load_image(t)


def test_directory_in_captions_file_is_reported(coll):
    (coll / "images" / "sub.jpg").mkdir()
    f = _write(
        coll / "c.jsonl", [{"image": "images/a.jpg", "captions": ["x"]}, {"image": "images/sub.jpg", "captions": ["y"]}]
    )
    with pytest.raises(InputError, match=r"c\.jsonl:2: image file .*sub\.jpg is a directory"):
        load_captions(f)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(p, quality=95)  # pure red in CMYK
    assert Image.open(p).mode == "CMYK"
    px = _pixels(load_image(p)).astype(int)
    assert px.shape == (48, 64, 3)
    assert (px[..., 0] > 230).all() and (px[..., 1:] < 30).all()
    _check_model_input(load_image(p))


def test_palette_png_keeps_its_colours(tmp_path):
    p = tmp_path / "p.png"
    im = Image.new("P", (40, 30))
    im.putpalette([*RED, *BLUE] + [0] * 762)
    im.paste(1, (20, 0, 40, 30))
    im.save(p)
    assert Image.open(p).mode == "P"
    px = _pixels(load_image(p))
    assert (px[:, :20] == RED).all() and (px[:, 20:] == BLUE).all()
    # a palette with a transparent entry: transparent pixels become white
    q = tmp_path / "pt.png"
    im.save(q, transparency=1)
    px = _pixels(load_image(q))
    assert (px[:, :20] == RED).all() and (px[:, 20:] == WHITE).all()


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "g16.png"
    ramp = np.tile(np.array([0, 257 * 64, 257 * 128, 65535], dtype=np.uint16).repeat(8), (16, 1))
    Image.fromarray(ramp).save(p)
    assert Image.open(p).mode in ("I;16", "I")
    px = _pixels(load_image(p))
    assert px.shape == (16, 32, 3) and (px[..., 0] == px[..., 2]).all()
    assert px[0, ::8, 0].tolist() == [0, 64, 128, 255]  # PIL's own conversion would clip all but 0 to 255
    _check_model_input(load_image(p))
    # 32-bit integer images with values above 255 are read as 16-bit too
    i32 = Image.fromarray(ramp.astype(np.int32), "I")
    assert _pixels(load_image(i32))[0, ::8, 0].tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path, mode):
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red
    rgba[:, 10:20] = (255, 0, 0, 0)  # fully transparent (its colour must not show)
    rgba[:, 20:] = (0, 0, 0, 128)  # half-transparent black
    im = Image.fromarray(rgba, "RGBA").convert(mode)
    p = tmp_path / f"alpha_{mode}.png"
    im.save(p)
    px = _pixels(load_image(p)).astype(int)
    opaque = (255, 0, 0) if mode == "RGBA" else tuple([round(0.299 * 255)] * 3)
    assert np.abs(px[:, :10] - opaque).max() <= 1
    assert (px[:, 10:20] == WHITE).all()
    assert np.abs(px[:, 20:] - 127).max() <= 1
    _check_model_input(load_image(p))


def test_one_pixel_image(tmp_path):
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (255, 255, 255)).save(p)
    x = _check_model_input(load_image(p))
    np.testing.assert_allclose(x, 1.0, rtol=1e-6)


def test_extreme_aspect_ratio_is_cropped_first(tmp_path):
    p = tmp_path / "strip.png"
    strip = Image.new("RGB", (20_000, 2), BLUE)
    strip.paste(RED, (9_000, 0, 11_000, 2))  # the centre square lies in the red part
    strip.save(p)
    x = _check_model_input(load_image(p))
    np.testing.assert_allclose(x[:, 112, 112], (np.array(RED) - 127) / 128, atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), RED)
    im.paste(BLUE, (20, 0, 40, 20))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise
    p = tmp_path / "rotated.jpg"
    im.save(p, exif=exif, quality=95)
    up = load_image(p)
    assert up.size == (20, 40)  # upright: portrait
    px = _pixels(up).astype(int)
    assert np.abs(px[5, 10] - RED).max() < 40 and np.abs(px[35, 10] - BLUE).max() < 40  # red on top
    _check_model_input(up)


def test_huge_jpeg_is_decoded_reduced_with_bounded_memory(tmp_path):
    """A 10,000 x 10,000 JPEG (100 M pixels: 300 MB as RGB) is decoded at 1/8 scale: the loader's peak
    memory grows by far less than one full-size grey plane, and the content is right."""
    import subprocess
    import sys

    p = tmp_path / "huge.jpg"
    im = Image.new("L", (10_000, 10_000), 0)
    im.paste(255, (5_000, 0, 10_000, 10_000))  # left half black, right half white
    im.save(p, quality=60)
    del im
    code = (
        "import resource, sys, numpy as np\n"
        "from lexret.data import load_image, preprocess_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "img = load_image(sys.argv[1]); x = preprocess_image(img)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(img.size[0], img.size[1], after - before, float(x[:, :, :100].mean()), float(x[:, :, 124:].mean()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "DecompressionBombWarning" not in proc.stderr
    w, h, grown_kb, left, right = proc.stdout.split()
    assert 448 <= int(w) < 896 and int(w) == int(h)
    assert int(grown_kb) < 60_000, f"peak memory grew by {int(grown_kb) // 1024} MB"  # a full decode: >= 100 MB
    assert float(left) == pytest.approx(-127 / 128, abs=0.02) and float(right) == pytest.approx(1.0, abs=0.02)


def test_large_png_is_reduced_before_conversion(tmp_path):
    p = tmp_path / "large.png"
    im = Image.new("L", (3_000, 2_000), 0)
    im.paste(255, (1_500, 0, 3_000, 2_000))
    im.save(p, compress_level=1)
    img = load_image(p)
    assert min(img.size) >= 448 and max(img.size) < 3_000 and img.size[0] / img.size[1] == pytest.approx(1.5, rel=0.01)
    x = _check_model_input(img)
    assert x[:, :, :100].mean() == pytest.approx(-127 / 128, abs=0.01) and x[:, :, 124:].mean() == pytest.approx(1.0)
    assert load_image(p, size=None).size == (3_000, 2_000)  # size=None: full resolution


@pytest.mark.parametrize("size", [(12_000, 9_000), (20_000, 20_000)], ids=["over-lexret-bound", "pil-bomb-error"])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, size):
    p = png_header(tmp_path / "bomb.png", *size)
    with pytest.raises(InputError) as e:
        load_image(p, path="c.jsonl", line=2)
    msg = str(e.value)
    assert msg.startswith("c.jsonl:2: ") and "bomb.png" in msg and "downscale it" in msg
    from lexret.data import MAX_IMAGE_PIXELS

    assert MAX_IMAGE_PIXELS == 10_000 * 10_000
