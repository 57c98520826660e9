"""Ray, the one distributed engine of lexret's offline jobs: the only module that imports ``ray``.

``--ray`` takes ``local`` (start a Ray instance inside this process, with this machine's cores),
``auto`` (join the cluster ``ray start --head`` started on this machine) or an address
(``HOST:PORT`` of a head node, or a ``ray://HOST:10001`` client address). An address is probed
with a plain TCP connection first, so an unreachable one is a single message after at most
:data:`CONNECT_TIMEOUT_S` seconds, not a hang. Workers run lexret's own functions; on a real
cluster every node needs lexret installed (same version) and the job's files on a shared file
system.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lexret.errors import LexretError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DEFAULT_RAY_PORT = 6379
DEFAULT_CLIENT_PORT = 10001
LOCAL = "local"
AUTO = "auto"


class RayUnavailableError(LexretError):
    """Ray is not installed, or the cluster given by ``--ray`` cannot be reached."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "--ray needs Ray: `pip install 'ray[data]==2.60.0'` (make setup installs it)"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    rest = address.removeprefix("ray://")
    default = DEFAULT_CLIENT_PORT if address.startswith("ray://") else DEFAULT_RAY_PORT
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, default
    try:
        return host, int(port)
    except ValueError:
        raise RayUnavailableError(f"--ray {address!r} is not local, auto or HOST:PORT") from None


def probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`RayUnavailableError` unless ``address`` accepts a TCP connection in time."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise RayUnavailableError(
            f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with `ray start --head` "
            "on that host, or use --ray local to run on this machine"
        ) from None


def _local_env() -> dict[str, Any]:
    """Local workers import the same lexret as this process (a source checkout need not be installed)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


@contextmanager
def connect(spec: str, *, num_cpus: int | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """Ray, initialised for the duration of the block (an already initialised Ray is used as it is)."""
    ray = _import_ray()
    if spec not in (LOCAL, AUTO):
        probe(spec, timeout_s)
    if ray.is_initialized():
        yield ray
        return
    common = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if spec == LOCAL:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, runtime_env=_local_env(), **common)
        else:
            ray.init(address=spec, **common)
    except RayUnavailableError:
        raise
    except Exception as e:  # ray.init raises ConnectionError, RuntimeError, a bare Exception on start-up timeouts
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if spec == LOCAL:
            raise RayUnavailableError(f"a local Ray could not start ({why}); retry when the machine is less busy, "
                                      "or run without --ray") from None  # fmt: skip
        raise RayUnavailableError(
            f"cannot join Ray at --ray {spec} ({why}); start a cluster with `ray start --head`, or use --ray local"
        ) from None
    log.info("Ray: %s CPUs available", ray.cluster_resources().get("CPU", 0))
    try:
        yield ray
    finally:
        ray.shutdown()


def _unwrap(ray, ref_or_refs):
    """``ray.get``, re-raising a lexret error raised inside a task as itself (one message, no traceback)."""
    try:
        return ray.get(ref_or_refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, LexretError | KeyboardInterrupt):
            raise cause from None
        raise
    except ray.exceptions.ActorDiedError as e:
        raise LexretError(f"a Ray worker died ({str(e).splitlines()[0]}); see the Ray logs") from None


def map_tasks(
    fn: Callable[..., Any], jobs: Sequence[tuple], *, num_cpus: float, desc: str, max_in_flight: int | None = None
) -> list[Any]:
    """``[fn(*job) for job in jobs]`` as Ray tasks (at most ``max_in_flight`` at once), in job order."""
    ray = _import_ray()
    remote = ray.remote(num_cpus=num_cpus, max_retries=0)(fn)
    refs: list[Any] = []
    pending: list[Any] = []
    results: dict[int, Any] = {}
    index: dict[Any, int] = {}
    with tqdm(total=len(jobs), desc=desc, unit="task", disable=None) as bar:
        try:
            for i, job in enumerate(jobs):
                if max_in_flight and len(pending) >= max_in_flight:
                    done, pending = ray.wait(pending, num_returns=1)
                    results[index[done[0]]] = _unwrap(ray, done[0])
                    bar.update(1)
                ref = remote.remote(*job)
                index[ref] = i
                refs.append(ref)
                pending.append(ref)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                results[index[done[0]]] = _unwrap(ray, done[0])
                bar.update(1)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    return [results[i] for i in range(len(jobs))]


def start_actors(cls: type, args: Sequence[tuple], *, num_cpus: float) -> list[Any]:
    """One Ray actor of ``cls`` per argument tuple (each its own process), ready when this returns."""
    ray = _import_ray()
    actor_cls = ray.remote(num_cpus=num_cpus, max_restarts=0)(cls)
    actors = [actor_cls.remote(*a) for a in args]
    _unwrap(ray, [a.ready.remote() for a in actors])  # construction errors surface here
    return actors


def call_all(actors: Sequence[Any], method: str, *args: Any, **kwargs: Any) -> list[Any]:
    """``getattr(actor, method)(*args, **kwargs)`` on every actor in parallel; results in actor order."""
    ray = _import_ray()
    return _unwrap(ray, [getattr(a, method).remote(*args, **kwargs) for a in actors])


def stop_actors(actors: Sequence[Any]) -> None:
    ray = _import_ray()
    for a in actors:
        ray.kill(a)


def run_on_actors(
    actors: Sequence[Any], method: str, jobs: Sequence[tuple], *, desc: str, unit: str = "job",
    sizes: Sequence[int] | None = None,
) -> list[Any]:  # fmt: skip
    """``[actor.method(*job) for job in jobs]`` spread over ``actors``, each running one job at a time and
    given the next one as soon as it is free; results in job order. ``sizes`` (one per job) drive the
    progress bar in items instead of jobs."""
    ray = _import_ray()
    if not actors:
        raise LexretError("no Ray actors to run the jobs on")
    results: dict[int, Any] = {}
    idle, running = list(actors), {}
    todo = iter(range(len(jobs)))
    with tqdm(total=sum(sizes) if sizes is not None else len(jobs), desc=desc, unit=unit, disable=None) as bar:
        while True:
            for actor, i in zip(list(idle), todo):  # zip stops at the first exhausted: no job is lost
                idle.remove(actor)
                running[getattr(actor, method).remote(*jobs[i])] = (i, actor)
            if not running:
                break
            done, _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(done[0])
            results[i] = _unwrap(ray, done[0])
            idle.append(actor)
            bar.update(sizes[i] if sizes is not None else 1)
    return [results[i] for i in range(len(jobs))]


def address_for_children(spec: str) -> str:
    """The ``--ray`` value a child process passes to join the Ray this process is connected to (a local
    Ray started here is reached by its address, not started again); ``spec`` when not connected."""
    ray = _import_ray()
    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    return spec
