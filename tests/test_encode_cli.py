"""`lexret encode` on hostile input, its resource flags, and interrupted jobs: streaming chunks, SIGKILL,
``--resume`` and refused resumptions. All images are generated here, in tmp_path."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data import png_header

from lexret.cli import main
from lexret.encoders import SparseEncoder
from lexret.partial import partial_path, state_path
from lexret.vectors import meta_path, read_vectors, write_vectors

pytestmark = pytest.mark.slow

# A `lexret` child that pauses 30 s after each finished chunk, so that the test can SIGKILL it
# between chunks; otherwise it is `python -m lexret`.
PAUSING_LEXRET = (
    "import sys, time\n"
    "import lexret.partial as p\n"
    "append = p.PartialVectorFile.append\n"
    "def append_then_pause(self, *a, **k):\n"
    "    append(self, *a, **k)\n"
    "    time.sleep(30)\n"
    "p.PartialVectorFile.append = append_then_pause\n"
    "from lexret.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


# One torch thread here and in the children: fast on a shared machine, and the same floats everywhere
# (the thread count changes image vectors in the last bits; a resumed job takes the recorded one).
THREADS = {**os.environ, "LEXRET_THREADS": "1"}


@pytest.fixture(scope="module")
def encoder() -> SparseEncoder:
    with pytest.MonkeyPatch.context() as m:
        m.setenv("LEXRET_THREADS", "1")
        return SparseEncoder.from_pretrained()


@pytest.fixture
def cli(encoder: SparseEncoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """`lexret` in this process, with the shipped encoder loaded once for the module."""
    import torch

    monkeypatch.setattr(SparseEncoder, "from_pretrained", classmethod(lambda cls, path=None: encoder))
    caplog.set_level(logging.INFO)
    torch.set_num_threads(1)

    def run(*args: str) -> int:
        return main(["-q", *args])

    return run


def lexret(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lexret", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=THREADS)


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def photo(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (3,))
    arr = np.clip(base + rng.integers(-60, 60, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ----- hostile images --------------------------------------------------------------------------

GOOD = ["photo.jpg", "cmyk.jpg", "palette.png", "grey16.png", "rgba.png", "la.png", "dot.png", "upright.png",
        "exif.png", "huge.jpg"]  # fmt: skip
BAD = {  # encoded in the job: each is skipped (or stops it) with this message
    "empty.jpg": "is an empty file (0 bytes)",
    "notes.jpg": "is not an image PIL can read",
    "cut.jpg": "is truncated or unreadable",
    "bomb.png": "downscale it",
}
UNLISTABLE = {"missing.jpg": "not found", "folder.jpg": "is a directory"}  # caught when the list is read


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A captions JSONL listing good images of every awkward kind and bad files, interleaved."""
    root = tmp_path_factory.mktemp("zoo")
    img = root / "img"
    photo(img / "photo.jpg", 1)
    Image.new("CMYK", (50, 40), (0, 255, 255, 0)).save(img / "cmyk.jpg")
    pal = Image.new("P", (40, 30))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (20, 0, 40, 30))
    pal.save(img / "palette.png")
    Image.fromarray(np.tile(np.linspace(0, 65535, 60).astype(np.uint16), (40, 1))).save(img / "grey16.png")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA").save(
        img / "rgba.png"
    )
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 40, 2), dtype=np.uint8), "LA").save(img / "la.png")
    Image.new("RGB", (1, 1), (0, 128, 255)).save(img / "dot.png")
    upright = Image.open(photo(img / "upright.png", 4, (30, 50)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(img / "exif.png", exif=exif)
    huge = Image.new("L", (10_000, 10_000), 40)
    huge.paste(220, (0, 0, 10_000, 5_000))
    huge.save(img / "huge.jpg", quality=50)
    del huge
    (img / "empty.jpg").write_bytes(b"")
    (img / "notes.jpg").write_text("shopping list: eggs, milk\n")
    (img / "cut.jpg").write_bytes((img / "photo.jpg").read_bytes()[:500])
    png_header(img / "bomb.png", 20_000, 20_000)
    (img / "folder.jpg").mkdir()
    order = ["photo.jpg", "empty.jpg", "cmyk.jpg", "notes.jpg", "palette.png", "missing.jpg", "cut.jpg",
             "grey16.png", "rgba.png", "folder.jpg", "la.png", "bomb.png", "dot.png", "upright.png", "exif.png",
             "huge.jpg"]  # fmt: skip
    return write_jsonl(root / "captions.jsonl", [{"image": f"img/{n}", "captions": [f"item {n}"]} for n in order])


def test_cli_stops_at_the_first_bad_image_naming_line_and_file(zoo: Path, tmp_path: Path) -> None:
    proc = lexret("encode", "--images", str(zoo), "--out", "v.jsonl", cwd=tmp_path)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert f"{zoo}:6: image file {zoo.parent}/img/missing.jpg not found; fix the path" in proc.stderr
    assert not (tmp_path / "v.jsonl").exists() and list(tmp_path.iterdir()) == []


def test_cli_skips_bad_images_reports_them_and_encodes_the_rest(
    zoo: Path, tmp_path: Path, encoder: SparseEncoder
) -> None:
    out = tmp_path / "v.jsonl"
    proc = lexret("encode", "--images", str(zoo), "--out", str(out), "--on-error", "skip", "--batch-size", "1",
                  "--chunk-size", "4", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    for name, needle in {**BAD, **UNLISTABLE}.items():
        assert any(name in line and needle in line for line in proc.stderr.splitlines()), (name, proc.stderr)
    assert "skipped 4 unreadable images" in proc.stderr and "skipped 2 bad items" in proc.stderr
    vs = read_vectors(out, encoder.vocab)
    assert vs.ids == [f"img/{n}" for n in GOOD]
    assert vs.batch.terms_per_row().min() > 0 and vs.batch.terms_per_row().max() <= 64
    assert np.isfinite(vs.batch.values).all() and (vs.batch.values > 0).all()
    # the good images get the vectors they get alone; the EXIF-rotated copy equals its upright twin
    alone = encoder.encode_images([zoo.parent / "img" / n for n in GOOD], batch_size=1)
    assert np.array_equal(vs.batch.indptr, alone.indptr) and np.array_equal(vs.batch.indices, alone.indices)
    assert np.allclose(vs.batch.values, alone.values, rtol=1e-6, atol=1e-7)
    i, j = GOOD.index("upright.png"), GOOD.index("exif.png")
    assert vs.batch.slice(i, i + 1).to_dicts(encoder.vocab) == vs.batch.slice(j, j + 1).to_dicts(encoder.vocab)
    assert not partial_path(out).exists() and not state_path(out).exists()


def test_bad_image_in_a_later_chunk_stops_and_resume_continues(cli, tmp_path: Path, caplog) -> None:
    folder = tmp_path / "imgs"
    for k in range(6):
        photo(folder / f"im{k}.jpg", 10 + k)
    good = (folder / "im4.jpg").read_bytes()
    (folder / "im4.jpg").write_text("not a picture")
    out = tmp_path / "v.jsonl"
    args = ["encode", "--images", str(folder), "--out", str(out), "--chunk-size", "2", "--batch-size", "2"]
    assert cli(*args) == 2
    assert f"{folder / 'im4.jpg'}: is not an image PIL can read" in caplog.text
    assert "4 of 6 items are done and kept" in caplog.text and "--resume" in caplog.text
    assert not out.exists() and partial_path(out).exists()
    (folder / "im4.jpg").write_bytes(good)  # fixed: continue where it stopped
    assert cli(*args, "--resume") == 0
    ref = tmp_path / "ref.jsonl"
    assert cli("encode", "--images", str(folder), "--out", str(ref), "--chunk-size", "2", "--batch-size", "2") == 0
    assert out.read_bytes() == ref.read_bytes()


# ----- texts -----------------------------------------------------------------------------------


def test_cli_texts_edge_cases(cli, tmp_path: Path, encoder: SparseEncoder, caplog) -> None:
    long = "a brown dog runs across the green grass " * 260  # 10,400 characters
    rows = [
        {"id": "empty", "text": ""},
        {"id": "blank", "text": " \t  "},
        {"id": "long", "text": long},
        {"id": "狗", "text": "一只狗在草地上奔跑"},
        {"id": "ar", "text": "كلب بني يجري على العشب الأخضر"},
        {"id": "emoji", "text": "🐶🐶 🌳"},
        {"id": "mixed", "text": "a dog 🐶 runs in the park 公园"},
    ]
    src = write_jsonl(tmp_path / "q.jsonl", rows)
    out = tmp_path / "q_vectors.jsonl"
    assert cli("encode", "--texts", str(src), "--out", str(out)) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == [r["id"] for r in rows]  # every text kept, in order
    assert json.loads(lines[0])["vector"] == {} and json.loads(lines[1])["vector"] == {}
    assert "2 empty texts give empty vectors (kept; they match nothing): empty, blank" in caplog.text
    assert "1 texts are longer than 48 wordpieces; only their first 46 were encoded: long" in caplog.text
    vs = read_vectors(out, encoder.vocab)
    assert all(0 < n <= 32 for n in vs.batch.terms_per_row()[2:])
    assert '"id": "狗"' in lines[3]  # UTF-8, not escaped


def test_encode_texts_empty_long_and_non_latin(encoder: SparseEncoder) -> None:
    texts = ["", "a dog on the beach", "   ", "一只狗在海滩上", "كلب على الشاطئ", "🐶🏖️"]
    b = encoder.encode_texts(texts, batch_size=4)
    assert len(b) == len(texts) and b.terms_per_row()[[0, 2]].tolist() == [0, 0]
    assert (b.terms_per_row()[[1, 3, 4, 5]] > 0).all() and np.isfinite(b.values).all()
    # empty texts never reach the model: the others are encoded as a batch without them
    without = encoder.encode_texts([texts[1], texts[3]])
    assert b.take([1, 3]).to_dicts(encoder.vocab) == without.to_dicts(encoder.vocab)
    again = encoder.encode_texts(texts, batch_size=4)
    assert np.array_equal(b.indices, again.indices) and np.array_equal(b.values, again.values)
    # 10,000 characters: truncated to the model's 48 wordpieces, so it equals any text with that prefix
    long = "a dog runs on the grass " * 420
    prefix = "a dog runs on the grass " * 10  # 60 wordpieces: also beyond the limit
    assert len(long) >= 10_000 and encoder.max_text_len == 48
    assert encoder.truncated([long, prefix, "a dog"]) == [0, 1]
    lb, pb = encoder.encode_texts([long]), encoder.encode_texts([prefix])
    assert np.array_equal(lb.indices, pb.indices) and np.array_equal(lb.values, pb.values)
    assert encoder.encode_texts([]).dim == len(encoder.vocab)


# ----- resource flags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--batch-size", "0"], "--batch-size must be between 1 and 4096, got 0"),
        (["--batch-size", "100000"], "--batch-size must be between 1 and 4096"),
        (["--chunk-size", "0"], "--chunk-size must be between 1 and 1,000,000"),
        (["--top-k", "0"], "--top-k must be between 1 and the vocabulary size"),
        (["--top-k", "40000"], "--top-k must be between 1 and the vocabulary size"),
    ],
)
def test_out_of_range_flags(cli, tmp_path: Path, caplog, extra: list[str], needle: str) -> None:
    src = tmp_path / "q.txt"
    src.write_text("a dog\n")
    assert cli("encode", "--texts", str(src), "--out", str(tmp_path / "v.jsonl"), *extra) == 2
    assert needle in caplog.text and not (tmp_path / "v.jsonl").exists()


@pytest.mark.parametrize("value", ["abc", "-1", "99999"])
def test_bad_thread_count_env(cli, tmp_path: Path, caplog, monkeypatch, value: str) -> None:
    monkeypatch.setenv("LEXRET_THREADS", value)
    src = tmp_path / "q.txt"
    src.write_text("a dog\n")
    assert cli("encode", "--texts", str(src), "--out", str(tmp_path / "v.jsonl")) == 2
    assert f"LEXRET_THREADS={value!r} is not a thread count" in caplog.text


def test_duplicate_text_ids_fail_before_encoding(cli, tmp_path: Path, caplog) -> None:
    src = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    assert cli("encode", "--texts", str(src), "--out", str(tmp_path / "v.jsonl")) == 2
    assert "id 'a' of item 2 already used by item 1" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]


# ----- interrupted jobs and --resume -----------------------------------------------------------


def texts_file(path: Path, n: int = 40) -> Path:
    things = ["dog", "cat", "bike", "boat", "child", "ball", "tree", "horse"]
    places = ["beach", "street", "park", "snow", "lake"]
    rows = [{"id": f"t{i}", "text": f"a {things[i % 8]} near the {places[i % 5]} number {i}"} for i in range(n)]
    return write_jsonl(path, rows)


def kill_after_first_chunk(
    args: list[str], out: Path, cwd: Path, threads: int = 1, sig: int = signal.SIGKILL
) -> tuple[dict, subprocess.Popen, str]:
    """Run `lexret` (pausing after each chunk) and send it ``sig`` once the first chunk is recorded:
    the progress record then, the process and its stderr."""
    err = cwd / f"stderr-{sig}.txt"
    with err.open("wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", PAUSING_LEXRET, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=f, env={**THREADS, "LEXRET_THREADS": str(threads)})  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            if state_path(out).is_file():
                state = json.loads(state_path(out).read_text())
                if state["done"] > 0:
                    break
            if proc.poll() is not None:
                pytest.fail(f"lexret ended (exit {proc.returncode}) before a chunk was done: {err.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("no chunk was done within 180 s")
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    err.unlink()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    return state, proc, text


def test_killed_text_job_resumes_to_the_same_bytes(cli, tmp_path: Path, caplog) -> None:
    src = texts_file(tmp_path / "texts.jsonl")
    ref = tmp_path / "ref.jsonl"
    common = ["--chunk-size", "8", "--batch-size", "4"]
    assert cli("encode", "--texts", str(src), "--out", str(ref), *common) == 0

    out = tmp_path / "out.jsonl"
    args = ["-q", "encode", "--texts", str(src), "--out", str(out), *common]
    state, _, _ = kill_after_first_chunk(args, out, tmp_path)
    assert state["done"] == 8 and state["rows"] == 8 and state["fingerprint"]["items"] == 40
    assert not out.exists() and not meta_path(out).exists()  # nothing under the final name
    kept = partial_path(out).read_bytes()
    assert len(kept) == state["bytes"] and kept == b"".join(ref.read_bytes().splitlines(keepends=True)[:8])
    # a kill in the middle of the next chunk's write leaves a torn line past the recorded bytes
    with partial_path(out).open("ab") as f:
        f.write(b'{"id": "t8", "vector": {"dog": 1.2' + b"3" * 100_000)  # longer than the rest of the job

    # resuming with other settings or other input is refused, and the unfinished job is left alone
    assert cli("encode", "--texts", str(src), "--out", str(out), *common, "--resume", "--top-k", "5") == 2
    assert "cannot resume" in caplog.text and "top_k: 32 then, 5 now" in caplog.text
    other = texts_file(tmp_path / "other.jsonl", 41)
    assert cli("encode", "--texts", str(other), "--out", str(out), *common, "--resume") == 2
    assert "items: 40 then, 41 now" in caplog.text and "without --resume to start over" in caplog.text
    assert partial_path(out).read_bytes().startswith(kept) and not out.exists()

    caplog.clear()
    assert cli("encode", "--texts", str(src), "--out", str(out), "--resume", "--batch-size", "16") == 0
    assert "interrupted job's batch size 4, chunk size 8 and 1 threads (not 16, 1024, 1)" in caplog.text
    assert "8 of 40 items were done" in caplog.text
    assert out.read_bytes() == ref.read_bytes()
    assert meta_path(out).read_text() == meta_path(ref).read_text()
    assert not partial_path(out).exists() and not state_path(out).exists()


def test_killed_image_job_resumes_to_the_same_bytes(cli, tmp_path: Path, encoder: SparseEncoder, caplog) -> None:
    """Killed while running on two threads, resumed by a process on one: the resumed part runs on two
    threads again, so the output equals a two-thread run of the whole job."""
    import torch

    folder = tmp_path / "imgs"
    files = [photo(folder / f"{k:02d}.png", 100 + k, (40 + 7 * k, 60 - 2 * k)) for k in range(10)]
    common = ["--chunk-size", "4", "--batch-size", "2"]
    out = tmp_path / "out.jsonl"
    # the complete output of an earlier job stays as it is until the new one is complete
    write_vectors(out, ["old"], encoder.encode_images(files[:1]), encoder.vocab, meta={"model_id": "earlier"})
    previous, previous_meta = out.read_bytes(), meta_path(out).read_bytes()
    args = ["-q", "encode", "--images", str(folder), "--out", str(out), *common]
    state, _, _ = kill_after_first_chunk(args, out, tmp_path, threads=2)
    assert state["done"] == 4 and state["threads"] == 2
    assert out.read_bytes() == previous and meta_path(out).read_bytes() == previous_meta
    assert cli("encode", "--images", str(folder), "--out", str(out), *common, "--resume") == 0
    assert "and 2 threads (not 2, 4, 1)" in caplog.text
    assert torch.get_num_threads() == 1  # restored after the job
    # the same bytes as encoding all images at once, on two threads, with the same batch size
    whole = tmp_path / "whole.jsonl"
    torch.set_num_threads(2)
    try:
        batch = encoder.encode_images(files, batch_size=2)
    finally:
        torch.set_num_threads(1)
    write_vectors(whole, [f.name for f in files], batch, encoder.vocab)
    assert out.read_bytes() == whole.read_bytes()


def test_sigterm_keeps_the_finished_chunks_for_resume(cli, tmp_path: Path) -> None:
    src = texts_file(tmp_path / "texts.jsonl", 12)
    out = tmp_path / "v.jsonl"
    args = ["encode", "--texts", str(src), "--out", str(out), "--chunk-size", "4", "--batch-size", "4"]
    state, proc, stderr = kill_after_first_chunk(["-q", *args], out, tmp_path, sig=signal.SIGTERM)
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "4 of 12 items are done and kept" in stderr and "rerun with --resume" in stderr
    assert not out.exists() and partial_path(out).stat().st_size == state["bytes"]
    assert cli(*args, "--resume") == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [f"t{i}" for i in range(12)]


def test_interrupted_npz_job_resumes_and_a_fresh_start_discards(
    cli, tmp_path: Path, encoder: SparseEncoder, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import lexret.partial

    src = texts_file(tmp_path / "texts.jsonl", 20)
    out = tmp_path / "v.npz"
    common = ["encode", "--texts", str(src), "--out", str(out), "--chunk-size", "8", "--batch-size", "8"]
    append = lexret.partial.PartialVectorFile.append
    calls = []

    def append_then_ctrl_c(self, *a, **k):
        append(self, *a, **k)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(lexret.partial.PartialVectorFile, "append", append_then_ctrl_c)
        assert cli(*common) == 130
    assert "16 of 20 items are done and kept" in caplog.text and not out.exists()
    assert cli(*common, "--resume") == 0
    vs = read_vectors(out, encoder.vocab)
    ids = [f"t{i}" for i in range(20)]
    texts = [json.loads(x)["text"] for x in src.read_text().splitlines()]
    whole = encoder.encode_texts(texts, batch_size=8)
    assert vs.ids == ids and vs.batch.values.dtype == np.float32
    assert np.array_equal(vs.batch.indptr, whole.indptr) and np.array_equal(vs.batch.indices, whole.indices)
    assert np.array_equal(vs.batch.values, whole.values)
    assert vs.meta["side"] == "text" and vs.meta["model_id"] == encoder.model_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.jsonl", "v.npz", "v.npz.meta.json"]

    # leftovers of an unfinished job are discarded (and said so) by a run without --resume
    partial_path(out).write_text('{"id": "stale", "vector": {}}\n')
    caplog.clear()
    assert cli(*common) == 0
    assert "discarding the unfinished output of an earlier job" in caplog.text
    assert read_vectors(out, encoder.vocab).ids == ids
    assert not partial_path(out).exists()


def test_a_second_job_on_the_same_output_is_refused(cli, tmp_path: Path, caplog) -> None:
    src = texts_file(tmp_path / "texts.jsonl", 3)
    out = tmp_path / "v.jsonl"
    fd = os.open(partial_path(out), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running job holds it
        assert cli("encode", "--texts", str(src), "--out", str(out)) == 2
        assert "another lexret encode is writing" in caplog.text
    finally:
        os.close(fd)
    assert cli("encode", "--texts", str(src), "--out", str(out)) == 0
    assert len(out.read_text().splitlines()) == 3


def test_a_full_disk_stops_the_job_and_resume_finishes_it(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import errno

    src = texts_file(tmp_path / "texts.jsonl", 12)
    common = ["encode", "--texts", str(src), "--chunk-size", "4", "--batch-size", "4"]
    ref = tmp_path / "ref.jsonl"
    assert cli(*common, "--out", str(ref)) == 0
    out = tmp_path / "v.jsonl"
    pwrite, calls = os.pwrite, []

    def pwrite_until_full(fd: int, data, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 2:
            half = bytes(data)[: len(data) // 2]
            pwrite(fd, half, offset)  # part of the chunk reaches the disk, then it is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return pwrite(fd, data, offset)

    with monkeypatch.context() as m:
        m.setattr(os, "pwrite", pwrite_until_full)
        assert cli(*common, "--out", str(out)) == 2
    assert "(No space left on device); make room and rerun with --resume to continue" in caplog.text
    assert "4 of 12 items are done and kept" in caplog.text and not out.exists()
    assert cli(*common, "--out", str(out), "--resume") == 0
    assert out.read_bytes() == ref.read_bytes()
