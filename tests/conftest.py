"""Shared fixtures: the default vocabulary and one small Lucene index built once per session.

Starting the JVM and building an index cost seconds, so tests that only read an index share
``small_index`` (and copy it with ``copy_index`` when they need to damage or replace it).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary, default_vocabulary

# Deterministic, modest property tests: the machine is shared and CI must be reproducible.
settings.register_profile(
    "lexret",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("lexret")


def write_color_collection(root: Path, n_items: int, n_train: int) -> Path:
    """A tiny captioned collection under ``root``: ``n_items`` noisy single-colour 64 x 64 images, three
    captions each (``a <colour> <thing> picture``), the first ``n_train`` in the train split, the rest
    in val. Returns the captions JSONL."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    colors = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 230, 30)}
    things = ["dog", "cat", "ball", "car"]
    lines = []
    for i in range(n_items):
        cname = list(colors)[i % 4]
        arr = np.clip(np.array(colors[cname]) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.jpg")
        caps = [f"a {cname} {things[(i + j) % 4]} picture" for j in range(3)]
        lines.append({"image": f"images/{i}.jpg", "captions": caps, "split": "train" if i < n_train else "val"})
    out = root / "captions.jsonl"
    out.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return out


SMALL_MODEL_ID = "test-model/v1"
SMALL_N_DOCS = 300


@dataclass(frozen=True)
class BuiltIndex:
    path: Path
    ids: list[str]
    docs: SparseBatch  # float vectors as given to the indexer
    meta: dict[str, Any]
    config: IndexConfig
    info: IndexInfo


@pytest.fixture(scope="session")
def vocab() -> Vocabulary:
    return default_vocabulary()


@pytest.fixture(scope="session")
def small_index(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary) -> BuiltIndex:
    """300 zipf documents (~30 terms each) indexed at the default scale; do not modify it."""
    docs = zipf_batch(SMALL_N_DOCS, len(vocab), 30, seed=11)
    ids = synthetic_ids(SMALL_N_DOCS, "doc")
    config = IndexConfig(threads=1)
    info = IndexInfo(model_id=SMALL_MODEL_ID, modality="text", source="synthetic")
    out = tmp_path_factory.mktemp("small") / "index"
    meta = Indexer(vocab, config).build([(ids, docs)], out, info)
    return BuiltIndex(out, ids, docs, meta, config, info)


@pytest.fixture
def copy_index(tmp_path: Path, small_index: BuiltIndex):
    """A private copy of the session index, for tests that damage or replace it."""

    def make(name: str = "index") -> Path:
        dst = tmp_path / name
        shutil.copytree(small_index.path, dst)
        return dst

    return make


@pytest.fixture(scope="session")
def small_queries(vocab: Vocabulary) -> tuple[list[str], SparseBatch]:
    """Float queries of ~8 terms from the term distribution of ``small_index`` (zipf_batch draws
    which terms are frequent from the seed first, so the same seed gives the same distribution)."""
    q = zipf_batch(40, len(vocab), 8, seed=11)
    return synthetic_ids(40, "q"), q


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the session's Ray tests: 2 CPUs (tasks and actors ask for fractions
    of one, so several fit on a 2-core machine), no dashboard; shut down at the end."""
    ray = pytest.importorskip("ray")
    from lexret.distributed.cluster import _local_env

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=_local_env())
    yield ray
    ray.shutdown()


def _starts_ray(item: pytest.Item) -> bool:
    return "ray_local" in getattr(item, "fixturenames", ()) or item.get_closest_marker("ray") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start Ray in the pytest process run last. Measured in CI: once Ray was initialised in
    a process whose in-process JVM (pyjnius, Lucene) was already running, the next in-process Lucene
    search died with a segmentation fault (Ray's start-up replaces signal handlers the JVM relies on).
    lexret's own commands never mix the two in one process (Lucene runs in child processes or Ray
    actors under --ray); the test session does, so its order keeps them apart."""
    items[:] = [it for it in items if not _starts_ray(it)] + [it for it in items if _starts_ray(it)]
