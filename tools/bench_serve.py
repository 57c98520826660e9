"""Load check of ``lexret serve``: requests per second and p50/p95 latency of ``/api/search`` with 1
and 8 concurrent clients, against 127.0.0.1 only.

Starts a server (``--index``, default: the embedded sample) on a free port of 127.0.0.1, or uses one
already running (``--url``, which must be a loopback address). Each concurrency level sends at most
``--requests`` requests, for at most ``--max-seconds``, after ``--warmup`` unmeasured ones; queries
are the sample's captions in a fixed shuffled order. Latency is the client's wall time per request;
the server's own encode_ms and search_ms are reported beside it. Prints the figures and can write
JSON; asserts nothing.

    python tools/bench_serve.py                                   # the sample (100 images)
    python tools/bench_serve.py --index /work/runs/serve/index-100k --json runs/bench_serve_100k.json
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from lexret.serve.process import ServerProcess
from lexret.serve.sample import SAMPLE_CAPTIONS

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_queries(path: Path, seed: int = 0) -> list[str]:
    caps = [c for line in path.read_text().splitlines() if line.strip() for c in json.loads(line)["captions"]]
    random.Random(seed).shuffle(caps)
    return caps


def run_level(url: str, queries: list[str], clients: int, requests: int, max_seconds: float, k: int) -> dict:
    """``clients`` threads, each with its own connection, share a budget of ``requests`` requests."""
    import httpx

    lock = threading.Lock()
    state = {"next": 0}
    lat: list[float] = []
    enc: list[float] = []
    srch: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while time.perf_counter() < deadline:
                with lock:
                    i = state["next"]
                    if i >= requests:
                        return
                    state["next"] += 1
                t = time.perf_counter()
                r = c.get("/api/search", params={"q": queries[i % len(queries)], "k": k})
                dt = time.perf_counter() - t
                with lock:
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        continue
                    body = r.json()
                    lat.append(dt * 1000)
                    enc.append(body["encode_ms"])
                    srch.append(body["search_ms"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        for f in [ex.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    a = np.array(lat) if lat else np.zeros(1)
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(wall, 2),
        "req_per_s": round(len(lat) / wall, 2) if wall else 0.0,
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "server_encode_ms_p50": round(float(np.median(enc)), 1) if enc else None,
        "server_search_ms_p50": round(float(np.median(srch)), 1) if srch else None,
    }


def bench(url: str, args: argparse.Namespace) -> dict:
    import httpx

    health = httpx.get(url + "/api/health", timeout=30).json()
    queries = load_queries(Path(args.queries))
    warm = run_level(url, queries[::-1], 1, args.warmup, args.max_seconds, args.k)
    levels = [run_level(url, queries, c, args.requests, args.max_seconds, args.k) for c in args.clients]
    return {
        "index": health["indexes"]["images"]["path"],
        "num_docs": health["num_docs"],
        "model_id": health["model_id"],
        "k": args.k,
        "warmup_requests": warm["requests"],
        "levels": levels,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=None, help="image index to serve (default: the embedded sample)")
    p.add_argument("--url", default=None, help="a running server on 127.0.0.1 instead of starting one")
    p.add_argument("--cache-dir", default=None, help="the sample's cache folder (lexret serve --cache-dir)")
    p.add_argument("--queries", default=str(SAMPLE_CAPTIONS), help="captions JSONL whose captions are the queries")
    p.add_argument("--clients", default="1,8", help="concurrency levels (default 1,8)")
    p.add_argument("--requests", type=int, default=300, help="requests per level, at most (default 300)")
    p.add_argument("--max-seconds", type=float, default=60, help="seconds per level, at most (default 60)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    p.add_argument("--k", type=int, default=10, help="hits per request")
    p.add_argument("--workers", type=int, default=None, help="server worker threads (lexret serve --workers)")
    p.add_argument("--heap", default=None, help="server JVM heap")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    if args.url:
        if urlsplit(args.url).hostname not in LOOPBACK:
            raise SystemExit(f"--url {args.url}: this load check runs against 127.0.0.1 only")
        result = bench(args.url.rstrip("/"), args)
    else:
        server_args = [*(["--index", args.index] if args.index else []),
                       *(["--cache-dir", args.cache_dir] if args.cache_dir else []),
                       *(["--workers", str(args.workers)] if args.workers else []),
                       *(["--heap", args.heap] if args.heap else [])]  # fmt: skip
        with ServerProcess(server_args) as srv:
            result = bench(srv.url, args)
    print(f"{result['num_docs']:,} documents ({result['index']}), k={result['k']}, model {result['model_id']}")
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'server encode p50':>17} {'server search p50':>17}")  # fmt: skip
    for r in result["levels"]:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['req_per_s']:>7.1f} {r['p50_ms']:>7.1f} "
              f"{r['p95_ms']:>7.1f} {r['server_encode_ms_p50']:>17} {r['server_search_ms_p50']:>17}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
