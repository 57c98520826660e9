"""Run ``lexret serve`` in a child process on a free port of 127.0.0.1 and wait until it answers:
used by the tests, ``tools/bench_serve.py`` and ``tools/screenshot_serve.py``."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from lexret.errors import LexretError

log = logging.getLogger(__name__)

URL_LINE = re.compile(r"lexret serve: (http://\S+?)/?\s")
STOP_TIMEOUT_S = 30


class ServerProcess:
    """``with ServerProcess(["--index", ...]) as srv: httpx.get(srv.url + "/api/health")``.

    The server listens on 127.0.0.1, on a port the OS chooses (``--port 0``); ``url`` has no
    trailing slash. On exit the server gets SIGINT (a graceful stop) and is killed if it lingers."""

    def __init__(self, args: Sequence[str] = (), *, start_timeout_s: float = 900.0, env: dict | None = None,
                 log_file: str | Path | None = None) -> None:  # fmt: skip
        self.args = list(args)
        self.start_timeout_s = start_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.log_file = Path(log_file) if log_file else None
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def __enter__(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "lexret", "-q", "serve", "--host", "127.0.0.1", "--port", "0", *self.args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, bufsize=1
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.url:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self._fail(f"did not start within {self.start_timeout_s:g} s")
            if line is None:
                self._fail(f"exited with code {self.proc.wait()}")
            m = URL_LINE.search(line)
            if m:
                self.url = m.group(1).rstrip("/")
        self._wait_healthy(deadline)
        return self

    def _pump(self, lines: queue.Queue) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        sink = open(self.log_file, "a", encoding="utf-8") if self.log_file else None  # noqa: SIM115
        try:
            for line in self.proc.stdout:
                self.output.append(line)
                del self.output[:-200]
                if sink:
                    sink.write(line)
                    sink.flush()
                lines.put(line)
        finally:
            lines.put(None)
            if sink:
                sink.close()

    def _wait_healthy(self, deadline: float) -> None:
        import httpx

        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self._fail("never answered /api/health")

    def _fail(self, what: str) -> None:
        self.stop()
        raise LexretError(f"lexret serve {' '.join(self.args)} {what}; its output:\n{''.join(self.output[-40:])}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("lexret serve did not stop within %d s; killing it", STOP_TIMEOUT_S)
            self.proc.kill()
            return self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()
