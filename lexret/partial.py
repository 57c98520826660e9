"""Resumable vector output: ``lexret encode`` writes chunk by chunk beside its output and renames
the result into place only when it is complete.

While a job for ``OUT`` runs, two files sit beside it:

- ``.OUT.partial``: the vectors of the finished chunks, as JSONL lines (also for ``.npz`` output,
  which is assembled from it at the end). The job holds an exclusive ``flock`` on it, so a second
  job for the same output is refused instead of interleaving its lines.
- ``.OUT.state.json``: the job's fingerprint (input file, side, split, item count, a hash of the ids
  and, for texts, of the texts, model id, top-k, vocabulary hash), its batch size, chunk size and
  torch thread count (a resumed job uses them again: each can change the last bits of the vectors),
  the items done, the rows and bytes of the partial file that hold them, and the items skipped. It
  is rewritten atomically (and fsynced) after each chunk's lines are fsynced.

A job killed at any moment leaves ``OUT`` as it was: absent, or the previous complete file. With
``resume`` a job continues after the last recorded chunk (bytes past it, such as a line torn by the
kill, are cut off) and is refused if its fingerprint differs; without it, leftovers of an earlier
job are discarded (with a warning) and the job starts over. An image job trusts that the images it
already encoded were not changed in between (it fingerprints their paths, not their pixels).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lexret.errors import LexretError
from lexret.fileio import write_json
from lexret.types import SparseBatch
from lexret.vectors import meta_path, read_vectors, vector_lines, write_vectors
from lexret.vocab import Vocabulary

log = logging.getLogger(__name__)

STATE_VERSION = 1


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def state_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.state.json")


def _sha256(values: Iterable[str]) -> str:
    h = hashlib.sha256()
    for v in values:
        h.update(v.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def fingerprint(
    *,
    source: str | Path,
    side: str,
    ids: Sequence[str],
    model_id: str,
    top_k: int,
    vocab_hash: str,
    split: str | None = None,
    texts: Sequence[str] | None = None,
    documents: bool = False,
) -> dict[str, Any]:
    """What identifies an encoding job: a resumed job must agree on every entry."""
    fp: dict[str, Any] = {
        "input": str(Path(source).resolve()),
        "side": side,
        "split": split,
        "items": len(ids),
        "ids_sha256": _sha256(ids),
        "model_id": model_id,
        "top_k": int(top_k),
        "vocab_hash": vocab_hash,
    }
    if texts is not None:
        fp["texts_sha256"] = _sha256(texts)
    if documents:  # only then: fingerprints of query encodings stay those of earlier versions
        fp["text_role"] = "document"
    return fp


@dataclass
class JobState:
    """The progress record of one job (``.OUT.state.json``)."""

    fingerprint: dict[str, Any]
    batch_size: int
    chunk_size: int
    threads: int = 0  # torch threads: the thread count can change image vectors in the last bits
    done: int = 0  # input items finished (encoded or skipped)
    rows: int = 0  # vectors in the partial file
    bytes: int = 0  # length of the partial file holding them
    skipped: list[list[str]] = field(default_factory=list)  # [id, reason]
    version: int = STATE_VERSION

    @classmethod
    def read(cls, path: Path) -> JobState | None:
        """The record at ``path``; ``None`` when there is none or it cannot be used (logged)."""
        if not path.is_file():
            return None
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**obj)
        except (OSError, ValueError, TypeError) as e:
            log.warning("%s: unreadable progress record (%s); it is ignored", path, e)
            return None
        if state.version != STATE_VERSION:
            log.warning("%s: progress record of another lexret version; it is ignored", path)
            return None
        return state


class PartialVectorFile:
    """The partial output of one encoding job; see the module docstring.

    >>> with PartialVectorFile(out, fp, vocab, batch_size=32, chunk_size=1024, resume=False) as w:
    ...     for a in range(w.state.done, n, w.state.chunk_size): w.append(ids, batch, done=...)
    ...     w.finish(meta)
    """

    def __init__(
        self,
        out: str | Path,
        fp: dict[str, Any],
        vocab: Vocabulary,
        *,
        batch_size: int,
        chunk_size: int,
        threads: int = 0,
        resume: bool = False,
    ) -> None:
        self.out = Path(out)
        self.partial = partial_path(self.out)
        self.state_file = state_path(self.out)
        self.vocab = vocab
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open_locked()
        try:
            self.state = self._start(fp, JobState(fp, batch_size, chunk_size, threads), resume)
        except BaseException:
            self.close()
            raise

    # ----- set-up -----------------------------------------------------------------------------

    def _open_locked(self) -> int:
        """Open (creating) the partial file and take its exclusive lock; refuse if another job holds it."""
        for _ in range(100):
            try:
                fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise LexretError(f"cannot write {self.partial} ({e.strerror}); choose another --out") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LexretError(
                    f"another lexret encode is writing {self.out} (it holds {self.partial}); "
                    "wait for it to finish or choose another --out"
                ) from None
            try:
                same = os.stat(self.partial).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the job we waited for finished and moved the file away: open the new one
        raise LexretError(f"cannot lock {self.partial}; another job keeps replacing it")

    def _start(self, fp: dict[str, Any], new: JobState, resume: bool) -> JobState:
        old = JobState.read(self.state_file)
        size = os.fstat(self._fd).st_size
        if resume and old is not None:
            return self._resume(old, new, size)
        if resume:
            log.warning("%s: no unfinished job to resume; starting from the beginning", self.out)
        elif old is not None or size:
            done = f"{old.done} of {old.fingerprint.get('items', '?')} items done" if old else "no progress record"
            log.warning(
                "%s: discarding the unfinished output of an earlier job (%s); pass --resume to continue it instead",
                self.out,
                done,
            )
        os.ftruncate(self._fd, 0)
        self._save(new)
        return new

    def _resume(self, old: JobState, new: JobState, size: int) -> JobState:
        fp = new.fingerprint
        diff = [k for k in sorted(set(fp) | set(old.fingerprint)) if fp.get(k) != old.fingerprint.get(k)]
        if diff:
            what = "; ".join(f"{k}: {old.fingerprint.get(k)!r} then, {fp.get(k)!r} now" for k in diff)
            raise LexretError(
                f"cannot resume {self.out}: the unfinished job had other input or settings ({what}); "
                "rerun with the same input and settings, or without --resume to start over"
            )
        if size < old.bytes or (old.bytes and os.pread(self._fd, 1, old.bytes - 1) != b"\n"):
            raise LexretError(
                f"cannot resume {self.out}: {self.partial} does not match its progress record (damaged?); "
                "rerun without --resume to start over"
            )
        if size > old.bytes:
            log.info("%s: cutting %d bytes written after the last finished chunk", self.partial, size - old.bytes)
            os.ftruncate(self._fd, old.bytes)
            os.fsync(self._fd)
        settings = ("batch_size", "chunk_size", "threads")
        if any(getattr(old, k) != getattr(new, k) for k in settings if getattr(old, k)):
            log.warning(
                "resuming with the interrupted job's batch size %d, chunk size %d and %d threads (not %d, %d, %d), "
                "so that the vectors equal those of an uninterrupted run",
                *(getattr(old, k) for k in settings),
                *(getattr(new, k) for k in settings),
            )
        log.info("resuming %s: %d of %d items were done", self.out, old.done, fp["items"])
        return old

    # ----- writing ----------------------------------------------------------------------------

    def _save(self, state: JobState) -> None:
        write_json(self.state_file, asdict(state), fsync=True)

    def append(self, ids: Sequence[str], batch: SparseBatch, *, done: int, skipped: Sequence[tuple[str, str]] = ()):
        """Append one finished chunk (its vectors, and the items it skipped), then record that the
        first ``done`` input items are finished. Durable once this returns."""
        if len(ids) != len(batch):
            raise ValueError(f"{len(ids)} ids for {len(batch)} vectors")
        data = "".join(vector_lines(ids, batch, self.vocab)).encode("utf-8")
        view = memoryview(data)
        pos = self.state.bytes
        state = JobState(**{**asdict(self.state), "skipped": [*self.state.skipped, *([i, r] for i, r in skipped)]})
        state.done, state.rows, state.bytes = done, state.rows + len(ids), pos + len(data)
        try:
            while view:
                n = os.pwrite(self._fd, view, pos)
                view, pos = view[n:], pos + n
            os.fsync(self._fd)
            self._save(state)
        except OSError as e:
            raise LexretError(
                f"cannot write {self.partial} ({e.strerror}); make room and rerun with --resume to continue"
            ) from None
        self.state = state

    def finish(self, meta: dict[str, Any]) -> None:
        """Move the complete output to its final name (JSONL: a rename; ``.npz``: assembled from the
        partial file, written atomically), write its ``.meta.json`` and remove the job's files."""
        if self.state.done != self.state.fingerprint["items"]:
            raise ValueError(f"{self.state.done} of {self.state.fingerprint['items']} items done")
        meta = {**meta, "vocab_hash": self.vocab.hash}
        meta_path(self.out).unlink(missing_ok=True)  # never leave the old sidecar beside new vectors
        if self.out.suffix == ".npz":
            if self.state.rows:
                vs = read_vectors(self.partial, self.vocab)
                ids, b = vs.ids, vs.batch
                batch = SparseBatch(b.indptr, b.indices, b.values.astype(np.float32), b.dim)
            else:
                ids, batch = [], SparseBatch.empty(0, len(self.vocab))
            write_vectors(self.out, ids, batch, self.vocab, meta=meta)
            self.state_file.unlink(missing_ok=True)
            self.partial.unlink()
        else:
            self.state_file.unlink(missing_ok=True)
            os.replace(self.partial, self.out)
            write_json(meta_path(self.out), meta)
        self.close()

    def close(self) -> None:
        """Release the lock; an unfinished job's files stay for ``--resume``."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PartialVectorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
