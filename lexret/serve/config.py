"""Settings and limits of ``lexret serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_K = 10
MAX_K = 1000  # hits per request: 1..MAX_K
MAX_QUERY_CHARS = 1000  # longer text queries are refused (the model reads 48 wordpieces anyway)
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_TIMEOUT_S = 30.0  # every request's work is bounded by this
DEFAULT_WORKERS = 4  # threads that encode and search; more requests than this wait in a bounded queue
QUEUE_PER_WORKER = 8  # requests waiting per worker thread before new ones are refused (503)
DEFAULT_EXPLAIN_TOP = 30
MULTIPART_SLACK = 64 * 1024  # bytes a multipart body may hold beyond the image itself (headers, boundaries)


@dataclass
class ServeConfig:
    """What ``lexret serve`` serves and how. ``index=None``: the embedded sample (built on first start)."""

    index: Path | None = None
    images: Path | None = None  # the folder the image ids are relative to
    captions_index: Path | None = None  # an index of caption vectors, for image -> captions
    captions_texts: Path | None = None  # JSONL {"id", "text", "image"?} naming the captions' texts
    model: Path | None = None  # sparse checkpoint (default: the shipped one)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20)
    workers: int = DEFAULT_WORKERS
    heap: str | None = None
    cache_dir: Path | None = None  # where the sample's indexes are built (default: ~/.cache/lexret)

    def __post_init__(self) -> None:
        from lexret.errors import LexretError

        if not 0 < self.timeout_s <= 3600:
            raise LexretError(f"--timeout must be between 0 and 3600 seconds, got {self.timeout_s}")
        if self.max_upload_bytes < 1:
            raise LexretError("--max-upload-mb must be positive")
        if not 1 <= self.workers <= 64:
            raise LexretError(f"--workers must be between 1 and 64, got {self.workers}")
        if not 0 <= self.port <= 65535:
            raise LexretError(f"--port must be between 0 and 65535, got {self.port}")
        for name in ("index", "images", "captions_index", "captions_texts", "model", "cache_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
