"""`lexret encode --ray`: Ray Data hands parts of whole batches to actors that load the model once;
the vectors equal those of plain `lexret encode`, bit for bit, and an interrupted job resumes with
the parts it finished kept as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lexret.cli import main
from lexret.vector_parts import MANIFEST, read_manifest
from lexret.vectors import read_vectors

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "lexret" / "resources" / "flickr8k_sample"
BROKEN = 97  # the image that stops the first run (one worker): in part 3, the last of 0..3


def _same_vectors(a, b) -> None:
    assert a.ids == b.ids
    assert a.batch.values.dtype == b.batch.values.dtype == np.float32
    for name in ("indptr", "indices", "values"):
        assert np.array_equal(getattr(a.batch, name), getattr(b.batch, name)), name


def test_ray_encode_equals_plain_encode_and_resumes(ray_local, tmp_path: Path, vocab, caplog) -> None:
    shutil.copytree(SAMPLE, tmp_path / "sample")
    captions = tmp_path / "sample" / "captions.jsonl"
    assert main(["encode", "--images", str(captions), "--out", str(tmp_path / "plain.npz")]) == 0
    plain = read_vectors(tmp_path / "plain.npz", vocab)
    assert len(plain) == 100

    # the first run stops at a damaged image; the parts finished by then stay
    broken = tmp_path / "sample" / json.loads(captions.read_text().splitlines()[BROKEN])["image"]
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 3])
    out = tmp_path / "vectors"
    ray_args = ["encode", "--images", str(captions), "--out", str(out), "--ray", "local",
                "--cpus-per-worker", "0.5", "--chunk-size", "32"]  # fmt: skip
    assert main([*ray_args, "--workers", "1"]) == 2
    assert f"image {broken} is truncated or unreadable" in caplog.text
    assert not (out / MANIFEST).exists() and not (out / "part-00003.npz").exists()
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("part-*.npz")}
    assert sorted(kept) == ["part-00000.npz", "part-00001.npz", "part-00002.npz"]

    broken.write_bytes(good)
    assert main([*ray_args, "--workers", "2", "--resume"]) == 0
    for name, stamp in kept.items():  # finished parts are kept, not encoded again
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == stamp
    manifest = read_manifest(out)
    assert [p["name"] for p in manifest["parts"]] == [f"part-{i:05d}.npz" for i in range(4)]
    assert manifest["count"] == 100 and manifest["model_id"] == plain.meta["model_id"]
    assert manifest["vocab_hash"] == vocab.hash
    _same_vectors(read_vectors(out, vocab), plain)
