"""``lexret serve`` against a live server on 127.0.0.1 (started here, on a free port): results equal
``lexret search`` for the same query vector, each hit's contributions sum to its score, every bad
input gets its status and message, concurrent requests agree with serial ones, and a real headless
Chromium shows thumbnails and matched terms."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from lexret.serve.process import ServerProcess  # noqa: E402
from lexret.serve.sample import SAMPLE_CAPTIONS, SAMPLE_DIR  # noqa: E402

pytestmark = pytest.mark.slow

QUERIES = ["a dog runs through the grass", "two children playing in the water", "a man on a bike"]
FIRST_START_TIMEOUT_S = 2400
SAMPLE_IMAGE = next(iter(sorted((SAMPLE_DIR / "images").glob("*.jpg"))))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The default server: the embedded sample, indexed on first start into a fresh cache folder."""
    cache = tmp_path_factory.mktemp("serve-cache")
    # first start: encodes the 100 images and 500 captions and builds two indexes (minutes on a busy machine)
    with ServerProcess(["--cache-dir", str(cache)], start_timeout_s=FIRST_START_TIMEOUT_S) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def health(client):
    return client.get("/api/health").json()


@pytest.fixture(scope="module")
def encoder():
    from lexret.encoders import SparseEncoder

    return SparseEncoder.from_pretrained()


def _search(client, q: str, k: int = 20, **params) -> dict:
    r = client.get("/api/search", params={"q": q, "k": k, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_health_describes_the_served_sample(health):
    assert health["status"] == "ok"
    assert health["num_docs"] == 100
    assert health["indexes"]["images"]["model_id"] == health["model_id"]
    assert health["indexes"]["captions"]["num_docs"] == sum(
        len(json.loads(line)["captions"]) for line in SAMPLE_CAPTIONS.read_text().splitlines() if line.strip()
    )


def test_text_search_equals_lexret_search_for_the_same_query_vector(client, health, encoder, tmp_path):
    from lexret.quantize import Quantizer
    from lexret.trec import read_run
    from lexret.vectors import write_vectors

    qids = [f"q{i}" for i in range(len(QUERIES))]
    vectors = tmp_path / "queries.jsonl"
    write_vectors(vectors, qids, encoder.encode_texts(QUERIES), encoder.vocab, {"model_id": encoder.model_id})
    run = tmp_path / "run.trec"
    index = health["indexes"]["images"]["path"]
    cmd = [sys.executable, "-m", "lexret", "-q", "search", "--index", index, "--queries", str(vectors),
           "--k", "20", "--out", str(run), "--threads", "1"]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300)
    expected = read_run(run)
    quantizer = Quantizer(health["indexes"]["images"]["quantization"]["scale"])
    toks = encoder.vocab.tokens
    for qid, q in zip(qids, QUERIES):
        data = _search(client, q, k=20)
        assert [(h["id"], h["score"]) for h in data["hits"]] == [(d, float(s)) for d, s in expected[qid]]
        assert [h["rank"] for h in data["hits"]] == list(range(1, len(data["hits"]) + 1))
        idx, val = quantizer.quantize(encoder.encode_texts([q])).row(0)
        assert len(idx) > 0
        assert data["query"]["terms"] == {toks[int(i)]: int(v) for i, v in zip(idx, val)}
        assert list(data["query"]["terms"].values()) == sorted(val.tolist(), reverse=True)
        assert data["encode_ms"] >= 0 and data["search_ms"] >= 0
        for h in data["hits"]:
            assert h["image_url"] == "/images/" + h["id"]


def test_contributions_are_query_weight_times_impact_and_sum_to_the_score(client):
    for q in QUERIES:
        data = _search(client, q, k=30)
        assert data["hits"]
        qterms = data["query"]["terms"]
        for h in data["hits"]:
            contrib = [t["contribution"] for t in h["terms"]]
            assert sum(contrib) == h["score"]
            assert contrib == sorted(contrib, reverse=True) and all(c > 0 for c in contrib)
            doc = client.get("/api/explain", params={"id": h["id"], "top": 1000}).json()
            impacts = {t["term"]: t["impact"] for t in doc["terms"]}
            assert len(impacts) == doc["n_terms"]
            shared = {t: qterms[t] * impacts[t] for t in qterms if t in impacts}
            assert {t["term"]: t["contribution"] for t in h["terms"]} == shared


def test_explain_lists_a_documents_terms_heaviest_first(client):
    doc = client.get("/api/explain", params={"id": "images/" + SAMPLE_IMAGE.name, "top": 5}).json()
    assert doc["id"] == "images/" + SAMPLE_IMAGE.name and len(doc["terms"]) == 5 < doc["n_terms"]
    impacts = [t["impact"] for t in doc["terms"]]
    assert impacts == sorted(impacts, reverse=True)


def test_image_query_finds_the_image_itself_first(client):
    data = SAMPLE_IMAGE.read_bytes()
    raw = client.post("/api/search/image", params={"k": 5}, content=data, headers={"content-type": "image/jpeg"})
    form = client.post("/api/search/image", params={"k": 5}, files={"file": (SAMPLE_IMAGE.name, data, "image/jpeg")})
    assert raw.status_code == form.status_code == 200, (raw.text, form.text)
    assert raw.json()["hits"] == form.json()["hits"]
    top = raw.json()["hits"][0]
    assert top["id"] == "images/" + SAMPLE_IMAGE.name
    assert sum(t["contribution"] for t in top["terms"]) == top["score"]


def test_image_query_can_find_captions(client):
    files = {"file": (SAMPLE_IMAGE.name, SAMPLE_IMAGE.read_bytes(), "image/jpeg")}
    r = client.post("/api/search/image", params={"k": 10, "target": "captions"}, files=files)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) == 10 and r.json()["target"] == "captions"
    # the shipped model has a caption-prior bank: the caption index carries priors, shown apart from the words
    assert r.json()["query"]["prior_weight"] > 0 and "[unused0]" not in r.json()["query"]["terms"]
    for h in hits:
        assert h["text"] and h["image_url"].startswith("/images/images/") and "#" in h["id"]
        assert all(t["term"] != "[unused0]" for t in h["terms"]) and h["prior"] >= 0
        assert sum(t["contribution"] for t in h["terms"]) + h["prior"] == h["score"]
        doc = client.get("/api/explain", params={"id": h["id"], "target": "captions", "top": 1000}).json()
        assert h["prior"] == r.json()["query"]["prior_weight"] * doc["prior"]
        assert all(t["term"] != "[unused0]" for t in doc["terms"]) and len(doc["terms"]) == doc["n_terms"]


def test_images_are_served_and_paths_outside_the_folder_refused(client):
    r = client.get("/images/images/" + SAMPLE_IMAGE.name)
    assert r.status_code == 200 and r.content == SAMPLE_IMAGE.read_bytes()
    for path, status in [
        ("/images/..%2F..%2F..%2Fetc%2Fpasswd", 403),
        ("/images/%2Fetc%2Fpasswd", 403),
        ("/images/images/..%2F..%2Fserve%2Fapp.py", 403),
        ("/images/captions.jsonl", 404),
        ("/images/images/nope.jpg", 404),
    ]:
        r = client.get(path)
        assert r.status_code == status, (path, r.text)
        assert "error" in r.json()


BAD_REQUESTS = [
    ("GET", "/api/search", {}, 400, "the query is empty"),
    ("GET", "/api/search", {"q": "   "}, 400, "the query is empty"),
    ("GET", "/api/search", {"q": "dog " * 300}, 400, "more than the limit of 1000"),
    ("GET", "/api/search", {"q": "dog", "k": "0"}, 400, "k must be between 1 and 1000, got 0"),
    ("GET", "/api/search", {"q": "dog", "k": "1001"}, 400, "k must be between 1 and 1000, got 1001"),
    ("GET", "/api/search", {"q": "dog", "k": "ten"}, 400, "k must be an integer between 1 and 1000"),
    ("GET", "/api/search", {"q": "dog", "target": "videos"}, 400, "unknown target 'videos'"),
    ("GET", "/api/explain", {"id": "images/nope.jpg"}, 404, "unknown id 'images/nope.jpg'"),
    ("GET", "/api/explain", {}, 400, "pass the document's id"),
    ("GET", "/api/nothing", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "params", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_their_status_and_message(client, method, path, params, status, message):
    r = client.request(method, path, params=params)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_bad_uploads_get_their_status_and_message(client):
    def post(**kw):
        return client.post("/api/search/image", **kw)

    r = post(content=b"this is not an image", headers={"content-type": "image/jpeg"})
    assert r.status_code == 415 and "not an image" in r.json()["error"], r.text
    r = post(files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "notes.txt" in r.json()["error"], r.text
    r = post(content=SAMPLE_IMAGE.read_bytes()[:2000], headers={"content-type": "image/jpeg"})
    assert r.status_code == 415 and "truncated" in r.json()["error"], r.text
    r = post(content=b"")
    assert r.status_code == 400 and "empty" in r.json()["error"], r.text
    r = post(files={"other": ("a.jpg", b"x", "image/jpeg")})
    assert r.status_code == 400 and "form field 'file'" in r.json()["error"], r.text
    big = b"\xff" * (20 * 2**20 + 1)  # default limit: 20 MB
    r = post(content=big, headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and "larger than the limit of 20 MB" in r.json()["error"], r.text
    r = post(content=iter([big[: 2**20]] * 21), headers={"content-type": "image/jpeg"})  # chunked, no length
    assert r.status_code == 413 and "larger than the limit of 20 MB" in r.json()["error"], r.text
    # the server is still there
    assert client.get("/api/health").status_code == 200


def test_concurrent_requests_agree_with_serial_ones(client):
    queries = [q for q in QUERIES for _ in range(4)] + ["a black dog", "people in a city street"] * 4
    serial = {q: _search(client, q, k=50)["hits"] for q in set(queries)}
    with ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(lambda q: _search(client, q, k=50)["hits"], queries))
    for q, hits in zip(queries, answers):
        assert hits == serial[q]


def test_index_of_another_model_and_the_time_limit(small_index, health, tmp_path):
    """An index built by another model answers 409 (the server still starts and says why in
    /api/health); work that exceeds --timeout answers 503; SIGINT stops the server with exit code 0."""
    captions = health["indexes"]["captions"]["path"]
    args = ["--index", str(small_index.path), "--captions-index", captions, "--timeout", "0.001"]
    with ServerProcess(args) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        h = c.get("/api/health").json()
        assert h["status"] == "index-mismatch" and not h["indexes"]["images"]["ready"]
        assert "test-model/v1" in h["indexes"]["images"]["error"]
        r = c.get("/api/search", params={"q": "a dog"})
        assert r.status_code == 409 and "does not match the queries" in r.json()["error"], r.text
        assert "test-model/v1" in r.json()["error"]
        r = c.get("/api/explain", params={"id": small_index.ids[0]})
        assert r.status_code == 409, r.text
        files = {"file": (SAMPLE_IMAGE.name, SAMPLE_IMAGE.read_bytes(), "image/jpeg")}
        r = c.post("/api/search/image", params={"target": "images"}, files=files)
        assert r.status_code == 409, r.text
        r = c.post("/api/search/image", params={"target": "captions"}, files=files)
        assert r.status_code == 503 and "longer than the server's limit of 0.001 s" in r.json()["error"], r.text
        r = c.get("/api/search", params={"q": "a dog", "target": "captions"})
        assert r.status_code == 503, r.text
        assert c.get("/api/health").status_code == 200
        assert srv.stop() == 0  # Ctrl-C stops the server cleanly


def test_serve_refuses_a_port_in_use_and_a_missing_index(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "lexret", "serve", "--port", str(port)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
    r = subprocess.run([sys.executable, "-m", "lexret", "serve", "--port", "0", "--index", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 2 and "does not exist" in r.stderr


def _chromium() -> str:
    """Debian's Chromium; skipped where it is absent, unless $LEXRET_REQUIRE_BROWSER is set (CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("LEXRET_REQUIRE_BROWSER"):
            pytest.fail(message + " and $LEXRET_REQUIRE_BROWSER is set")
        pytest.skip(message)
    return path


def test_page_in_a_headless_browser_shows_thumbnails_and_matched_terms(server):
    chromium = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            page.fill("#q", "a dog runs through the grass")
            page.press("#q", "Enter")
            page.wait_for_selector(".hit img", timeout=60_000)
            page.wait_for_function("document.querySelector('.hit img').complete", timeout=30_000)
            cards = page.locator(".hit")
            assert cards.count() == 30
            assert page.eval_on_selector(".hit img", "img => img.naturalWidth") > 0
            top_terms = page.locator(".hit .term.top .name").all_inner_texts()
            assert len(top_terms) == 30 and all(t.strip() for t in top_terms)
            query_terms = page.locator("#query-terms .qterm b").all_inner_texts()
            assert "dog" in query_terms and set(top_terms) <= set(query_terms)
            first_hit = page.locator(".hit").first
            shown = [int(x) for x in first_hit.locator(".term .contribution").all_inner_texts()]
            assert shown == sorted(shown, reverse=True) and shown[0] > 0
            assert "encode" in page.inner_text("#status") and "search" in page.inner_text("#status")
            assert "?q=a%20dog" in page.url
            # a bookmarked search runs on load
            page.goto(server.url + "/?q=two%20children%20playing%20in%20the%20water")
            page.wait_for_selector(".hit img", timeout=60_000)
            assert page.input_value("#q") == "two children playing in the water"
            # an image query through the file picker
            page.set_input_files("#file", str(SAMPLE_IMAGE))
            page.wait_for_function(
                f"document.querySelector('.hit') && document.querySelector('.hit').dataset.id === "
                f"'images/{SAMPLE_IMAGE.name}'",
                timeout=60_000,
            )
            assert not errors, errors
        finally:
            browser.close()


def test_bench_serve_tool_prints_its_figures(server):
    tool = Path(__file__).resolve().parent.parent / "tools" / "bench_serve.py"
    cmd = [sys.executable, str(tool), "--url", server.url, "--requests", "6", "--warmup", "1", "--clients", "1,2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "6", "0"), ("2", "6", "0")]
    bad = subprocess.run([sys.executable, str(tool), "--url", "http://example.com:8765"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "127.0.0.1 only" in bad.stderr
