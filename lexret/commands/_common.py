"""Flags and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lexret.backends.impact import ImpactParams
    from lexret.backends.lucene_two_phase import TwoPhaseParams


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


def add_ray_workers_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="with --ray: encoding actors, each loads the models once "
                   "(default 2)")  # fmt: skip
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="with --ray: CPUs Ray reserves per encoding actor, fractions allowed (default 1)")  # fmt: skip


def check_ray_args(args: argparse.Namespace) -> None:
    """``--workers``/``--cpus-per-worker`` need ``--ray``; ``--shards`` is 1 to MAX_SHARDS (eval, compare)."""
    from lexret.errors import LexretError

    if not args.ray and (args.workers is not None or args.cpus_per_worker is not None):
        raise LexretError("--workers and --cpus-per-worker size the Ray encoding actors; add --ray local|auto|ADDRESS")
    if args.workers is not None and args.workers < 1:
        raise LexretError(f"--workers must be at least 1, got {args.workers}")
    if args.cpus_per_worker is not None and not args.cpus_per_worker > 0:
        raise LexretError(f"--cpus-per-worker must be above 0, got {args.cpus_per_worker}")
    if args.shards is not None:
        from lexret.distributed.sharding import MAX_SHARDS

        if not 1 <= args.shards <= MAX_SHARDS:
            raise LexretError(f"--shards must be between 1 and {MAX_SHARDS}, got {args.shards}")


def add_two_phase_flags(p: argparse.ArgumentParser) -> None:
    """Flags of two-phase Lucene search (``TwoPhaseParams``); unset flags keep its defaults."""
    from lexret.backends.lucene_two_phase import TwoPhaseParams

    d = TwoPhaseParams()
    g = p.add_argument_group("two-phase Lucene search (lucene-2phase: approximate, docs/compare.md)")
    g.add_argument(
        "--prune-ratio", type=float, default=None,
        help=f"phase 1 keeps query terms weighing at least this share of the heaviest one (0 keeps all; default "
        f"{d.prune_ratio})",
    )  # fmt: skip
    g.add_argument(
        "--expansion", type=float, default=None,
        help=f"phase 1 retrieves k x this many candidates (default {d.expansion})",
    )  # fmt: skip
    g.add_argument(
        "--max-query-terms", type=int, default=None,
        help="phase 1 keeps at most this many of the heaviest query terms (default: no limit)",
    )  # fmt: skip
    g.add_argument(
        "--max-postings", type=int, default=None,
        help="then phase 1 keeps the most selective of those terms (weight x idf first) whose posting lists hold at "
        "most this many postings together, at least one term (default: no budget; --prune-ratio 0 for the budget "
        "alone)",
    )  # fmt: skip


def two_phase_params(args: argparse.Namespace) -> tuple[TwoPhaseParams, bool]:
    """The ``TwoPhaseParams`` the flags of :func:`add_two_phase_flags` give (checked) and whether any was set."""
    from lexret.backends.lucene_two_phase import TwoPhaseParams

    flags = {
        "prune_ratio": args.prune_ratio, "expansion": args.expansion, "max_terms": args.max_query_terms,
        "max_postings": args.max_postings,
    }  # fmt: skip
    given = {name: v for name, v in flags.items() if v is not None}
    return TwoPhaseParams(**given), bool(given)


def add_impact_flags(p: argparse.ArgumentParser) -> None:
    """Flags of impact-ordered search within a postings budget (``ImpactParams``)."""
    from lexret.backends.impact import ImpactParams

    d = ImpactParams()
    g = p.add_argument_group("impact-ordered search (impact: approximate, a bound on postings read per query)")
    g.add_argument(
        "--impact-postings", type=int, default=None,
        help=f"postings a query reads at most, those adding most to a score first (default {d.max_postings:,})",
    )  # fmt: skip
    g.add_argument(
        "--impact-expansion", type=float, default=None,
        help=f"k x this many documents with the best partial scores are scored exactly (default {d.expansion})",
    )  # fmt: skip


def impact_params(args: argparse.Namespace) -> tuple[ImpactParams, bool]:
    """The ``ImpactParams`` the flags of :func:`add_impact_flags` give (checked) and whether any was set."""
    from lexret.backends.impact import ImpactParams

    given = {
        name: v for name, v in (("max_postings", args.impact_postings), ("expansion", args.impact_expansion))
        if v is not None
    }  # fmt: skip
    return ImpactParams(**given), bool(given)
