"""The FastAPI application: the page, the JSON API, the images.

Every answer to a bad request is JSON ``{"error": MESSAGE}`` with a 4xx status; work runs on a
bounded pool of threads under a time limit (503 when it is exceeded or the queue is full), and an
unexpected failure is a 500 with a message, never a dead server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lexret.errors import InputError
from lexret.serve.config import (
    DEFAULT_EXPLAIN_TOP,
    DEFAULT_K,
    MAX_K,
    MAX_QUERY_CHARS,
    MULTIPART_SLACK,
    QUEUE_PER_WORKER,
)
from lexret.serve.retriever import TARGETS, RequestError, Retriever

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


class _Pool:
    """Worker threads with a bounded queue and a time limit per job."""

    def __init__(self, workers: int, timeout_s: float) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="lexret-serve")
        self.timeout_s = timeout_s
        self.limit = workers * QUEUE_PER_WORKER
        self.pending = 0
        self._lock = threading.Lock()

    async def run(self, fn, *args: Any) -> Any:
        with self._lock:
            if self.pending >= self.limit:
                raise RequestError(503, f"the server is busy ({self.pending} requests waiting); retry shortly")
            self.pending += 1
        future = self.executor.submit(fn, *args)
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            raise RequestError(
                503, f"the request took longer than the server's limit of {self.timeout_s:g} s; retry or lower k"
            ) from None

    def _done(self, _future: Any) -> None:
        with self._lock:
            self.pending -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _parse_k(raw: str | None, name: str = "k", default: int = DEFAULT_K) -> int:
    if raw is None or raw == "":
        return default
    try:
        k = int(raw)
    except ValueError:
        raise RequestError(400, f"{name} must be an integer between 1 and {MAX_K}, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise RequestError(400, f"{name} must be between 1 and {MAX_K}, got {k}")
    return k


def _parse_query(q: str | None) -> str:
    if q is None or not q.strip():
        raise RequestError(400, "the query is empty; pass a text as ?q=TEXT")
    if len(q) > MAX_QUERY_CHARS:
        raise RequestError(400, f"the query has {len(q)} characters, more than the limit of {MAX_QUERY_CHARS}")
    return q.strip()


def _parse_target(raw: str | None) -> str:
    target = raw or "images"
    if target not in TARGETS:
        raise RequestError(400, f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    return target


async def _read_upload(request: Request, limit: int) -> tuple[bytes, str]:
    """The uploaded image's bytes and name: a multipart form field ``file`` or the raw request body.
    More than ``limit`` bytes is refused (413) without reading more than the limit."""
    too_large = f"the upload is larger than the limit of {limit / 2**20:g} MB; send a smaller image"
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise RequestError(400, "the Content-Length header is not a number")
        if int(length) > limit + MULTIPART_SLACK:
            raise RequestError(413, too_large)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        if length is None:
            raise RequestError(411, "a multipart upload needs a Content-Length header")
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as e:  # malformed multipart body
            raise RequestError(400, f"the multipart body cannot be read ({e})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError(400, "send the image as the form field 'file' (or as the raw request body)")
        data = await upload.read(limit + 1)
        name = upload.filename or "upload"
    else:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise RequestError(413, too_large)
        data, name = bytes(buf), "upload"
    if len(data) > limit:
        raise RequestError(413, too_large)
    if not data:
        raise RequestError(400, "the upload is empty; send an image file")
    return data, name


def _search_upload(retriever: Retriever, data: bytes, name: str, k: int, target: str) -> dict[str, Any]:
    """Write the upload to a private temporary file and search with it (the file is removed after)."""
    with tempfile.TemporaryDirectory(prefix="lexret-upload-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            return retriever.search_image(path, k, target)
        except InputError as e:
            message = str(e).replace(str(path), name)
            raise RequestError(415, f"{message} (the upload is not an image lexret can decode)") from None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(retriever: Retriever) -> FastAPI:
    """The application over a loaded :class:`Retriever` (closed by the app's shutdown)."""
    config = retriever.config
    pool = _Pool(config.workers, config.timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.shutdown()

    app = FastAPI(title="lexret", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.retriever = retriever

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = ["{}: {}".format(".".join(str(x) for x in e.get("loc", ())), e.get("msg", "")) for e in exc.errors()]
        return _error(400, "bad request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}: {exc}); see the server log")

    @app.get("/api/search")
    async def search(q: str | None = None, k: str | None = None, target: str | None = None) -> dict[str, Any]:
        text, n = _parse_query(q), _parse_k(k)
        return await pool.run(retriever.search_text, text, n, _parse_target(target))

    @app.post("/api/search/image")
    async def search_image(request: Request, k: str | None = None, target: str | None = None) -> dict[str, Any]:
        n, where = _parse_k(k), _parse_target(target)
        retriever.view(where)  # an unservable target is refused before the upload is read
        data, name = await _read_upload(request, config.max_upload_bytes)
        return await pool.run(_search_upload, retriever, data, name, n, where)

    @app.get("/api/explain")
    async def explain(id: str | None = None, target: str | None = None, top: str | None = None) -> dict[str, Any]:
        if not id:
            raise RequestError(400, "pass the document's id as ?id=ID")
        n = _parse_k(top, "top", DEFAULT_EXPLAIN_TOP)
        return await pool.run(retriever.explain, id, _parse_target(target), n)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return retriever.health()

    @app.get("/images/{rel:path}")
    async def image(rel: str) -> FileResponse:
        return FileResponse(retriever.image_file(rel))

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
