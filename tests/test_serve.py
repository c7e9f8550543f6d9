"""The web page and JSON API of serve.py (molret.web.app), with FastAPI's
TestClient on a tiny model (``web_checkpoint``, conftest.py) and tiny
libraries; serve.py's startup errors."""
from __future__ import annotations

import logging
import shutil
import socket
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from fastapi.testclient import TestClient  # noqa: E402

from molret.search import engine as S  # noqa: E402
from molret.web import app as web  # noqa: E402
from molret.web import service as web_service  # noqa: E402
from molret.library.caches import library_embeddings  # noqa: E402

# A small SMILES library: numeric ids (PubChem CIDs), names, one id with markup, one invalid row.
SMI = """\
CCO 702
c1ccccc1 241
CC(=O)O 176
c1ccc(cc1)C(=O)O 243
C1CC invalid_ring
CCN(CC)CC triethylamine
OC(=O)CCC(=O)O 1110
c1ccncc1 pyridine
ClC(Cl)Cl <b>chloroform&co</b>
"""
IDS = ["702", "241", "176", "243", "triethylamine", "1110", "pyridine", "<b>chloroform&co</b>"]
SMILES_OF = {line.split()[1]: line.split()[0] for line in SMI.splitlines()}
QUERY = "The molecule is a small aromatic compound. It contains one carboxylic acid and one benzene ring."


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and 'File "' not in text


@pytest.fixture(scope="module")
def loaded(web_checkpoint, one_thread_module):
    from molret.models.checkpoint import load_model
    return load_model(web_checkpoint, "cpu")


def make_service(loaded, library, tmp_path, smiles_map=None, **kw):
    import torch
    model, cfg, vocab, tokenizer = loaded
    from molret.models.embedder import Embedder
    embedder = Embedder.single(model, cfg, vocab, tokenizer, torch.device("cpu"))
    lib = library_embeddings(library, embedder, cache_dir=tmp_path / "cache")
    engine = S.LibrarySearch(embedder, lib, "numpy", smiles_map)
    return web_service.SearchService(engine, kw.pop("model_path"), library, **kw)


@pytest.fixture(scope="module")
def service(loaded, web_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("weblib")
    lib = root / "mols.smi"
    lib.write_text(SMI)
    svc = make_service(loaded, lib, root, model_path=web_checkpoint)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(web.create_app(service), raise_server_exceptions=False) as c:
        yield c


def api(client, **params):
    return client.get("/api/search", params=params)


# ---------------------------------------------------------------- results

def test_api_results_and_ordering(client, service):
    r = api(client, q=QUERY, k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == QUERY and body["k"] == 5 and body["elapsed_ms"] >= body["search_ms"] > 0
    res = body["results"]
    assert [h["rank"] for h in res] == [1, 2, 3, 4, 5]
    scores = [h["score"] for h in res]
    assert scores == sorted(scores, reverse=True)
    assert all(h["id"] in IDS and h["smiles"] == SMILES_OF[h["id"]] for h in res)
    # the engine's own ranking
    expected = service.engine.search([QUERY], 5)[0]
    assert [h["id"] for h in res] == [h.id for h in expected]
    assert scores == pytest.approx([h.score for h in expected], abs=1e-5)
    # the shorter list is the head of the longer one
    assert [h["id"] for h in api(client, q=QUERY, k=2).json()["results"]] == [h["id"] for h in res[:2]]
    # health
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["molecules"] == len(IDS) and h["library"] == "mols.smi"
    assert "lrap" in h["metrics"]


def test_k_bounds(client):
    assert len(api(client, q=QUERY, k=1).json()["results"]) == 1
    assert len(api(client, q=QUERY, k=100).json()["results"]) == len(IDS)   # at most the library
    assert len(api(client, q=QUERY).json()["results"]) == len(IDS)          # default k = 10 > 8 molecules
    for bad in ("0", "101", "-1", "abc", "1.5", "1e2", "٣", "99999999999999999999"):
        for r in (api(client, q=QUERY, k=bad), client.get("/", params={"q": QUERY, "k": bad})):
            assert r.status_code == 400, (bad, r.status_code)
            assert "k must be a whole number from 1 to 100" in r.text and no_traceback(r.text)
    r = api(client, q=QUERY, k="0")
    assert r.headers["content-type"].startswith("application/json") and "error" in r.json()
    r = client.get("/", params={"q": QUERY, "k": "0"})
    assert r.headers["content-type"].startswith("text/html") and "<form" in r.text


def test_bad_queries(client):
    cases = [({}, "missing query"), ({"q": ""}, "empty query"), ({"q": "  \n\t "}, "empty query"),
             ({"q": "x" * 2001}, "query too long"), ({"k": "5"}, "missing query")]
    for params, msg in cases:
        r = client.get("/api/search", params=params)
        assert r.status_code == 400 and msg in r.json()["error"], (params, r.text[:200])
        if params:
            page = client.get("/", params=params)
            assert page.status_code == 400 and msg in page.text and no_traceback(page.text)
    assert api(client, q="x" * 2000, k=1).status_code == 200
    assert client.get("/").status_code == 200   # no query: the empty page


def test_unknown_paths_methods_and_dotdot(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html") and "not found" in r.text
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json() == {"error": "not found: /api/nope"}
    for path in ("/%2e%2e/%2e%2e/etc/passwd", "/static/%2E%2E/x", "/api/%2e%2e/health", "/a/..%2f..%2fetc"):
        r = client.get(path)
        assert r.status_code == 400, (path, r.status_code)
        assert "bad path" in r.text and no_traceback(r.text)
    assert client.get("/api/%2e%2e/health").json()["error"].startswith("bad path")
    r = client.post("/", data={"q": QUERY})
    assert r.status_code == 405 and no_traceback(r.text)
    r = client.post("/api/search", json={"q": QUERY})
    assert r.status_code == 405 and "error" in r.json()


# ------------------------------------------------------------------- page

def test_page_renders_cards(client):
    r = client.get("/")
    assert r.status_code == 200
    page = r.text
    assert "<form" in page and "name='q'" in page and "name='k'" in page
    assert "mols.smi" in page and "8 molecules" in page and "LRAP" in page   # library and model facts
    assert page.count("href='/?q=") == 3                                      # example queries
    assert "content-security-policy" in r.headers
    r = client.get("/", params={"q": QUERY, "k": 4})
    assert r.status_code == 200
    page = r.text
    assert page.count("class='hit'") == 4 and page.count("<svg") == 4
    assert "Top 4 of 8 molecules" in page
    assert "class='copy'" in page
    api_ids = [h["id"] for h in api(client, q=QUERY, k=4).json()["results"]]
    for ident in api_ids:
        if ident.isdigit():
            assert f"https://pubchem.ncbi.nlm.nih.gov/compound/{ident}" in page
    js = client.get("/app.js")
    assert js.status_code == 200 and "clipboard" in js.text


def test_output_is_escaped(client):
    attack = "<script>alert(1)</script>"
    r = client.get("/", params={"q": attack, "k": 100})
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    # a library id with markup is shown as text
    assert "<b>chloroform" not in r.text and "&lt;b&gt;chloroform&amp;co&lt;/b&gt;" in r.text
    assert api(client, q=attack).json()["query"] == attack   # JSON carries it as data
    # in error pages too
    for params in ({"q": attack, "k": "<i>"}, {"q": attack + "x" * 2000}):
        r = client.get("/", params=params)
        assert r.status_code == 400 and "<script>alert" not in r.text and "<i>" not in r.text
    r = client.get("/<script>alert(1)</script>")
    assert r.status_code == 404 and "<script>alert" not in r.text


def test_graph_library_with_decoded_smiles(loaded, web_checkpoint, demo_dir, tmp_path):
    lib = tmp_path / "graphs"
    lib.mkdir()
    files = sorted((demo_dir / "raw").glob("*.graph"))[:4]
    for f in files:
        shutil.copy(f, lib / f.name)
    (lib / "9999999.graph").write_text("edgelist:\n0 1\n1 0\n\nidx to identifier:\n0 12345\n1 67890\n")
    svc = make_service(loaded, lib, tmp_path, model_path=web_checkpoint, examples=[])
    try:
        with TestClient(web.create_app(svc), raise_server_exceptions=False) as c:
            res = c.get("/api/search", params={"q": QUERY, "k": 5}).json()["results"]
            decoded = [h for h in res if h["id"] != "9999999"]
            assert len(res) == 5 and all(h["smiles"] and h["smiles_decoded"] for h in decoded)
            assert {h["id"]: (h["smiles"], h["smiles_decoded"]) for h in res}["9999999"] == (None, False)
            page = c.get("/", params={"q": QUERY, "k": 5}).text
            # every decodable molecule drawn, with the no-stereo note; the graph that no structure fits is not
            assert page.count("<svg") == 4 and page.count("no stereo</div>") == 4
            assert page.count("SMILES unknown") == 1 and page.count("structure unknown") == 1
            assert "(4 with SMILES)" in page
    finally:
        svc.close()
    # with a SMILES map for one of them: the map's SMILES replaces the decoded one (it may carry stereo)
    first = files[0].stem
    svc = make_service(loaded, lib, tmp_path, smiles_map={first: "CCO"}, model_path=web_checkpoint, examples=[])
    try:
        with TestClient(web.create_app(svc), raise_server_exceptions=False) as c:
            res = c.get("/api/search", params={"q": QUERY, "k": 5}).json()["results"]
            assert [(h["smiles"], h["smiles_decoded"]) for h in res if h["id"] == first] == [("CCO", False)]
            page = c.get("/", params={"q": QUERY, "k": 5}).text
            assert page.count("<svg") == 4 and page.count("no stereo</div>") == 3
    finally:
        svc.close()


# ------------------------------------------------------ concurrency, faults

@pytest.mark.parametrize("max_batch", [None, 8])   # None: one query at a time on the CPU
def test_concurrent_requests(service, max_batch):
    queries = [f"{QUERY} variant {i}" if i % 2 else f"A molecule with {i} carbon atoms." for i in range(12)]
    expected = {q: [h.id for h in service.engine.search([q], 3)[0]] for q in queries}
    batcher = web_service.QueryBatcher(service.engine, max_batch)
    svc = web_service.SearchService(service.engine, service.model_path, service.library_path, facts={}, examples=[],
                            batcher=batcher)

    def one(i):
        q = queries[i % len(queries)]
        r = api(c, q=q, k=3)
        return q, r.status_code, r.json()

    try:
        with TestClient(web.create_app(svc), raise_server_exceptions=False) as c:
            with ThreadPoolExecutor(max_workers=10) as pool:
                out = list(pool.map(one, range(40)))
    finally:
        svc.close()
    for q, status, body in out:
        assert status == 200 and body["query"] == q
        assert [h["id"] for h in body["results"]] == expected[q]
    assert batcher.queries == 40 and batcher.batches <= 40 and (max_batch or 1) >= 40 / batcher.batches


class FlakyEngine:
    """Wraps an engine; a query containing BOOM makes the whole call fail."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def __len__(self):
        return len(self.engine)

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def search(self, queries, k=10):
        self.calls.append(list(queries))
        if any("BOOM" in q for q in queries):
            raise RuntimeError("engine exploded")
        return self.engine.search(queries, k)


def test_failing_query_gets_an_error_and_the_server_keeps_serving(service, caplog):
    flaky = FlakyEngine(service.engine)
    svc = web_service.SearchService(flaky, service.model_path, service.library_path, facts={}, examples=[])
    try:
        with TestClient(web.create_app(svc), raise_server_exceptions=False) as c:
            logger = logging.getLogger("molret.web.app")   # "molret" may not propagate (train.setup_logging)
            logger.addHandler(caplog.handler)
            try:
                with caplog.at_level(logging.ERROR, logger="molret.web.app"):
                    r = c.get("/api/search", params={"q": "BOOM " + QUERY})
            finally:
                logger.removeHandler(caplog.handler)
            assert r.status_code == 500 and "search failed (RuntimeError)" in r.json()["error"]
            assert no_traceback(r.text) and "exploded" not in r.text
            rec = [x for x in caplog.records if x.name == "molret.web.app"]
            assert rec and rec[-1].exc_info and "engine exploded" in caplog.text   # logged with its traceback
            page = c.get("/", params={"q": "BOOM"})
            assert page.status_code == 500 and "search failed" in page.text and no_traceback(page.text)
            ok = c.get("/api/search", params={"q": QUERY, "k": 3})   # the next request works
            assert ok.status_code == 200 and len(ok.json()["results"]) == 3
    finally:
        svc.close()


def test_batch_with_one_failing_query_fails_only_that_query(service):
    """Queries batched together: the failing one gets its error, the others their results."""
    flaky = FlakyEngine(service.engine)
    b = web_service.QueryBatcher(flaky)
    try:
        items = [("first " + QUERY, 2, Future()), ("BOOM", 3, Future()), ("third", 4, Future())]
        for _, _, f in items:
            f.set_running_or_notify_cancel()
        b._run(items)
        assert flaky.calls[0] == [q for q, _, _ in items]   # tried as one batch first
        assert len(items[0][2].result(0)[0]) == 2 and len(items[2][2].result(0)[0]) == 4
        with pytest.raises(RuntimeError, match="exploded"):
            items[1][2].result(0)
        assert len(b.search("again", 1)) == 1   # the worker thread still serves
    finally:
        b.close()


# ---------------------------------------------------------------- startup

def run_serve(argv, capsys):
    import serve
    with pytest.raises(SystemExit) as e:
        serve.main(argv)
    err = capsys.readouterr().err
    return e.value.code, err


def test_startup_errors(web_checkpoint, tmp_path, capsys):
    lib = tmp_path / "mols.smi"
    lib.write_text(SMI)
    code, err = run_serve(["--model", str(tmp_path / "missing.pt"), "--library", str(lib)], capsys)
    assert code == 2 and err.strip().splitlines() == [f"error: checkpoint {tmp_path / 'missing.pt'} does not exist"]
    code, err = run_serve(["--model", str(web_checkpoint), "--library", str(tmp_path / "none.smi")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: library")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage, not a checkpoint")
    code, err = run_serve(["--model", str(bad_ckpt), "--library", str(lib), "--port", "0", "--no-progress"], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"error: {bad_ckpt}") and "Traceback" not in err
    bad_zip = tmp_path / "broken.zip"
    bad_zip.write_bytes(b"not a zip file at all")
    code, err = run_serve(["--model", str(web_checkpoint), "--library", str(bad_zip), "--port", "0",
                           "--cache-dir", str(tmp_path / "c"), "--no-progress"], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "zip" in err
    assert "Traceback" not in err
    with socket.socket() as s:   # the port is taken
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, err = run_serve(["--model", str(web_checkpoint), "--library", str(lib), "--port", str(port)], capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (is another server running there? "
        f"choose another --port)"]
    code, err = run_serve(["--model", str(web_checkpoint), "--library", str(lib), "--port", "70000"], capsys)
    assert code == 2 and "--port" in err
    # another host: a one-line warning (then the missing checkpoint stops it before binding)
    code, err = run_serve(["--model", str(tmp_path / "missing.pt"), "--library", str(lib), "--host", "0.0.0.0"],
                          capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2 and lines[0].startswith("warning: --host 0.0.0.0: the page has no "
                                                                 "authentication")
    assert not web.warn_if_exposed("127.0.0.1") and not web.warn_if_exposed("localhost")
