"""Flags and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_vocab_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vocab", default=None, help="vocab.txt naming the dimensions (default: bert-base-uncased)")


def add_on_error_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="stop at the first bad input item (default) or skip bad items and report them",
    )


def add_heap_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--heap", default=None, help="JVM heap, 64m up to the machine memory (default: $LEXRET_JAVA_HEAP or 4g)"
    )


def add_ray_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--ray",
        default=None,
        metavar="local|auto|ADDRESS",
        help=f"{what}: local starts Ray in this process, auto joins the cluster of `ray start --head` "
        "on this machine, HOST:PORT (or ray://HOST:10001) joins a remote one (default: no Ray)",
    )


def count_lines(path: str | Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
