"""Collections in the Hugging Face `datasets` form (save_to_disk folders, parquet files) read as the
same items as the captions JSONL they were converted from, in every command that takes --data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lexret.cli import main
from lexret.data import load_captions
from lexret.errors import InputError

datasets = pytest.importorskip("datasets")

SAMPLE = Path(__file__).resolve().parents[1] / "lexret" / "resources" / "flickr8k_sample"


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEXRET_IMAGE_CACHE", str(tmp_path / "image-cache"))
    shutil.copytree(SAMPLE, tmp_path / "sample")
    return tmp_path / "sample"


def _columns(coll, *, files: bool) -> dict[str, list]:
    return {
        "image": [str(it.image) if files else it.key for it in coll],
        "captions": [list(it.captions) for it in coll],
        "split": [it.split for it in coll],
    }


def test_save_to_disk_with_embedded_images_reads_as_the_jsonl(sample: Path, tmp_path: Path) -> None:
    ref = load_captions(sample / "captions.jsonl")
    ds = datasets.Dataset.from_dict(_columns(ref, files=True)).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    originals = [it.image.read_bytes() for it in ref]
    shutil.rmtree(sample / "images")  # the dataset holds the image bytes itself
    coll = load_captions(tmp_path / "hf", split="val")
    assert [it.key for it in coll] == [Path(it.key).name for it in ref]
    assert [it.captions for it in coll] == [it.captions for it in ref]
    assert [it.image.read_bytes() for it in coll] == originals  # written once to the image cache
    assert all(str(it.image).startswith(str(tmp_path / "image-cache")) for it in coll)
    with pytest.raises(InputError, match="no usable items of split"):
        load_captions(tmp_path / "hf", split="train")


def test_dataset_dict_splits_and_missing_columns(sample: Path, tmp_path: Path) -> None:
    ref = load_captions(sample / "captions.jsonl")
    cols = _columns(ref, files=True)
    del cols["split"]
    dd = datasets.DatasetDict({"val": datasets.Dataset.from_dict(cols).select(range(10)),
                               "test": datasets.Dataset.from_dict(cols).select(range(10, 15))})  # fmt: skip
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(load_captions(tmp_path / "dd", split="test")) == 5
    assert len(load_captions(tmp_path / "dd")) == 15
    bad = datasets.Dataset.from_dict({"picture": cols["image"], "captions": cols["captions"]})
    bad.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x\.parquet: has no image column \(one of image"):
        load_captions(tmp_path / "x.parquet")


def test_parquet_with_relative_paths_gives_the_jsonl_items(sample: Path, tmp_path: Path, caplog) -> None:
    """The same items (ids, image files, captions, splits) as the JSONL: every command that takes
    --data (eval, compare, train) or encode --images reads them through load_captions."""
    ref = load_captions(sample / "captions.jsonl")
    rows = [json.loads(line) for line in (sample / "captions.jsonl").read_text().splitlines()]
    table = {"image": [r["image"] for r in rows], "captions": [r["captions"] for r in rows],
             "split": [r["split"] for r in rows]}  # fmt: skip
    datasets.Dataset.from_dict(table).to_parquet(sample / "sample.parquet")
    got = load_captions(sample / "sample.parquet", split="val")
    assert [(it.key, it.image, it.captions, it.split) for it in got] == [
        (it.key, it.image, it.captions, it.split) for it in ref
    ]
    table["image"][4] = "images/missing.jpg"
    datasets.Dataset.from_dict(table).to_parquet(sample / "bad.parquet")
    assert main(["encode", "--images", str(sample / "bad.parquet"), "--out", str(tmp_path / "v.npz")]) == 2
    assert f"bad.parquet:5: image file {sample / 'images' / 'missing.jpg'} not found" in caplog.text
