"""``lexret serve``: a search page and JSON API over one index (default: the embedded sample)."""

from __future__ import annotations

import argparse
import logging

from lexret.commands._common import add_heap_flag

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from lexret.serve.config import (
        DEFAULT_HOST,
        DEFAULT_MAX_UPLOAD_MB,
        DEFAULT_PORT,
        DEFAULT_TIMEOUT_S,
        DEFAULT_WORKERS,
    )

    p = sub.add_parser(
        "serve",
        help="serve a search page and JSON API that show why each image matched",
        description="Without --index, the embedded 100-image sample is indexed on first start (into --cache-dir) "
        "and served with its caption index. Open the printed address in a browser; /api/health, /api/search?q=, "
        "/api/search/image (POST an image), /api/explain?id= answer JSON.",
    )
    p.add_argument(
        "--index", default=None, help="image index folder (default: the embedded sample, built on first start)"
    )
    p.add_argument("--images", default=None, help="folder the image ids are relative to (served under /images/)")
    p.add_argument("--captions-index", default=None, help="caption index, for image -> captions searches")
    p.add_argument("--captions-texts", default=None, help='JSONL {"id", "text", "image"?} of the caption index')
    p.add_argument("--model", default=None, help="sparse checkpoint folder (default: the shipped one)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds a request may take (503 after)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest image upload, MB")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads that encode and search")
    p.add_argument("--cache-dir", default=None, help="where the sample's indexes are built (default ~/.cache/lexret)")
    add_heap_flag(p)
    p.set_defaults(func=run)


def _bind(host: str, port: int):
    import socket

    from lexret.errors import LexretError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise LexretError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise LexretError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
    sock.listen(128)
    return sock


def run(args: argparse.Namespace) -> int:
    import contextlib

    import uvicorn

    from lexret.serve.app import create_app
    from lexret.serve.config import ServeConfig
    from lexret.serve.retriever import Retriever

    config = ServeConfig(
        index=args.index, images=args.images, captions_index=args.captions_index,
        captions_texts=args.captions_texts, model=args.model, host=args.host, port=args.port,
        timeout_s=args.timeout, max_upload_bytes=int(args.max_upload_mb * 2**20), workers=args.workers,
        heap=args.heap, cache_dir=args.cache_dir,
    )  # fmt: skip
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: other machines can reach this server", config.host)
    sock = _bind(config.host, config.port)
    retriever = Retriever.load(config)
    try:
        app = create_app(retriever)
        host, port = sock.getsockname()[:2]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        print(f"lexret serve: {url}  (model {retriever.encoder.model_id}, "
              f"{retriever.health()['num_docs']} documents)", flush=True)  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5, access_log=False))
        # uvicorn re-raises the stop signal (Ctrl-C, SIGTERM) once its graceful shutdown is done
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        log.info("stopped")
    finally:
        retriever.close()
        sock.close()
    return 0
