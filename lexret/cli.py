"""The ``lexret`` command line: one entry point, one module per subcommand in ``lexret.commands``.

Each command module is light to import (no torch, no JVM) and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from lexret import __version__
from lexret.errors import LexretError

# Order is the order of `lexret --help`.
COMMANDS: tuple[str, ...] = (
    "index",
    "search",
    "evaluate",
    "train",
    "train-queries",
    "ensemble",
    "encode",
    "explain",
    "eval",
    "compare",
    "milvus",
    "serve",
)

log = logging.getLogger("lexret")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lexret", description="Learned sparse lexicon retrieval for images and text.")
    parser.add_argument("--version", action="version", version=f"lexret {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"lexret.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name == f"lexret.commands.{name.replace('-', '_')}":
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")


def _terminate_like_interrupt() -> None:
    """SIGTERM (``kill``, a job scheduler) unwinds like Ctrl-C, so that child processes are stopped
    and temporary build folders removed instead of being left behind."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    _terminate_like_interrupt()
    try:
        return int(args.func(args) or 0)
    except LexretError as e:
        if args.debug:
            raise
        log.error("%s", e)
        return e.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130  # also for SIGTERM: the caller sees an interrupted job, not a failure of lexret
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
