"""``lexret eval --ray`` and ``lexret compare --ray``: images and texts encoded with the sparse model
(and the dense baseline) by a pool of Ray actors that each load the models once.

The items are cut into parts that start on batch boundaries; an actor encodes a part with
:func:`lexret.encoders.encode_side`, the code in-process encoding runs, in the same batches, with
the driver's torch thread count and the driver's ``top_k`` settings. The parts are gathered in input
order, so the result equals in-process encoding bit for bit (sparse rows and dense arrays).
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np

from lexret.errors import LexretError
from lexret.types import SparseBatch

log = logging.getLogger(__name__)

PARTS_PER_WORKER = 4  # several parts per actor: a slow part does not hold the others back


@dataclass(frozen=True)
class RayEncode:
    """Where and how wide: ``spec`` as :func:`lexret.distributed.cluster.connect` takes it."""

    spec: str
    workers: int = 2
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1 or not self.cpus_per_worker > 0:
            raise LexretError("--workers must be at least 1 and --cpus-per-worker above 0")


@dataclass(frozen=True)
class EncoderSpec:
    """What an actor loads, so that it encodes as the driver's encoders do."""

    sparse_path: str
    dense_path: str | None
    top_k_doc: int
    top_k_query: int
    threads: int

    @classmethod
    def of(cls, sparse: Any, dense: Any | None) -> EncoderSpec:
        import torch

        return cls(str(sparse.path), None if dense is None else str(dense.path), sparse.top_k_doc, sparse.top_k_query,
                   torch.get_num_threads())  # fmt: skip


class BothEncoder:
    """A Ray actor: the sparse (and dense) model loaded once, encoding whole parts."""

    def __init__(self, spec: EncoderSpec) -> None:
        from lexret.encoders import THREADS_ENV

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ[THREADS_ENV] = str(spec.threads)  # the encoders set torch's threads from it
        import torch

        from lexret.encoders import DenseEncoder, SparseEncoder

        self.sparse = SparseEncoder.from_pretrained(spec.sparse_path)
        self.sparse.top_k_doc, self.sparse.top_k_query = spec.top_k_doc, spec.top_k_query
        self.dense = None if spec.dense_path is None else DenseEncoder.from_pretrained(spec.dense_path)
        torch.set_num_threads(spec.threads)  # threads can change the last bits of a vector

    def ready(self) -> bool:
        return True

    def encode(
        self, side: str, items: list[Any], batch_size: int, with_dense: bool = True
    ) -> tuple[SparseBatch, np.ndarray | None]:
        from lexret.encoders import encode_side

        return encode_side(side, items, self.sparse, self.dense if with_dense else None, batch_size=batch_size)


def part_bounds(n: int, batch_size: int, parts: int) -> list[tuple[int, int]]:
    """``[(a, b), ...]`` covering ``0..n`` in about ``parts`` pieces, each starting on a batch boundary."""
    batches = -(-n // batch_size)
    per = max(1, -(-batches // max(1, parts))) * batch_size
    return [(a, min(a + per, n)) for a in range(0, n, per)]


def gather(results: list[tuple[SparseBatch, np.ndarray | None]], dim: int) -> tuple[SparseBatch, np.ndarray | None]:
    """The parts' results joined in input order (as in-process encoding concatenates its batches)."""
    sparse = SparseBatch.concat([SparseBatch.empty(0, dim), *(s for s, _ in results)])
    dense = [d for _, d in results]
    if not dense or dense[0] is None:
        return sparse, None
    return sparse, np.concatenate(dense)


class RayEncoderPool:
    """Encoding actors, started on first use and stopped by :meth:`close` (or the ``with`` block's end)."""

    def __init__(self, sparse: Any, dense: Any | None, ray: RayEncode) -> None:
        self.sparse, self.dense, self.ray = sparse, dense, ray
        self._stack = ExitStack()
        self._actors: list[Any] | None = None

    def _start(self) -> list[Any]:
        if self._actors is None:
            from lexret.distributed.cluster import connect, start_actors, stop_actors

            self._stack.enter_context(connect(self.ray.spec))
            spec = EncoderSpec.of(self.sparse, self.dense)
            log.info("starting %d Ray encoding actors (%g CPUs, %d torch threads each)", self.ray.workers,
                     self.ray.cpus_per_worker, spec.threads)  # fmt: skip
            self._actors = start_actors(BothEncoder, [(spec,)] * self.ray.workers, num_cpus=self.ray.cpus_per_worker)
            self._stack.callback(stop_actors, self._actors)
        return self._actors

    def encode(self, side: str, items: list[Any], batch_size: int | None = None) -> tuple[SparseBatch, Any]:
        """What :func:`lexret.encoders.encode_side` returns for ``items``, computed by the actors."""
        from lexret.distributed.cluster import run_on_actors

        bs = batch_size or (32 if side == "image" else 64)
        items = list(items)
        if not items:
            raise LexretError(f"no {side}s to encode")
        actors = self._start()
        bounds = part_bounds(len(items), bs, PARTS_PER_WORKER * len(actors))
        jobs = [(side, items[a:b], bs, self.dense is not None) for a, b in bounds]
        desc = f"encoding {side}s ({'sparse + dense, ' if self.dense is not None else ''}Ray)"
        results = run_on_actors(actors, "encode", jobs, desc=desc, unit=side, sizes=[b - a for a, b in bounds])
        return gather(results, len(self.sparse.vocab))

    def close(self) -> None:
        self._stack.close()
        self._actors = None

    def __enter__(self) -> RayEncoderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_items(
    side: str, items: list[Any], sparse: Any, dense: Any | None, *, batch_size: int | None = None,
    pool: RayEncoderPool | None = None,
) -> tuple[SparseBatch, np.ndarray | None]:  # fmt: skip
    """In process (``pool`` None, with a progress bar), or on the pool's Ray actors: the same vectors."""
    if pool is None:
        from lexret.encoders import encode_side

        return encode_side(side, items, sparse, dense, batch_size=batch_size, progress=True)
    return pool.encode(side, items, batch_size)
