"""Tests for searching a shard folder through search.py --library DIR and predictions.py --library DIR
(--top-k too): the same top-k, scores and CSV as the library file itself.

The tiny random checkpoint, the SMILES library and the queries are those of tests/test_shards.py.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

# skips this module too where rdkit, torch_geometric or faiss is missing; search.py and predictions.py
# are imported from the repository root (pytest.ini: pythonpath = .)
from test_shards import QUERIES, SMI, loaded, tiny_ckpt  # noqa: E402,F401  (fixtures)
from conftest import run_script  # noqa: E402
from molret.library import shards as SH  # noqa: E402
from molret.models.embedder import Embedder  # noqa: E402


@pytest.fixture(scope="module")
def lib_and_folder(tmp_path_factory, loaded):  # noqa: F811
    """(the SMILES file, its 2-shard float32 folder, a query file)."""
    root = tmp_path_factory.mktemp("shardsearch")
    smi = root / "mols.smi"
    smi.write_text(SMI)
    model, cfg, vocab, _ = loaded
    for i in range(2):
        SH.embed_shard(smi, root / "mols.shards", i, 2, Embedder.single(model, cfg, vocab), dtype="float32",
                       chunk_size=3)
    qfile = root / "queries.txt"
    qfile.write_text("".join(q + "\n" for q in QUERIES))
    return smi, root / "mols.shards", qfile


_run = run_script


def _hits(result):
    return [[(h.id, h.score) for h in hits] for hits in result["results"]]


def test_search_folder_equals_the_file(lib_and_folder, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    smi, folder, _ = lib_and_folder
    base = ["--model", tiny_ckpt, "-k", 5, "--rank-of", "benzene", "--no-progress", *QUERIES]
    code, whole, cap = _run("search", capsys, "--library", smi, "--cache-dir", tmp_path, "--backend", "numpy", *base)
    assert code == 0, cap.err
    for index in ("auto", "exact", "hnsw"):
        code, res, cap = _run("search", capsys, "--library", folder, "--index", index, "--index-threads", 1, *base)
        assert code == 0, cap.err
        assert "in 2 shard(s), 2 invalid rows skipped" in cap.err and "search index: " in cap.err
        got, ref = _hits(res), _hits(whole)
        assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in ref], index
        np.testing.assert_allclose([[s for _, s in row] for row in got], [[s for _, s in row] for row in ref],
                                   atol=1e-5)
        assert res["ranks"] == whole["ranks"]
    assert len(list(folder.glob("index-hnsw-*.faiss"))) == 1  # stored in the folder
    # an approximate --index on the library file: built in memory, same hits on 12 molecules
    code, res, cap = _run("search", capsys, "--library", smi, "--cache-dir", tmp_path, "--index", "hnsw", *base)
    assert code == 0 and [[i for i, _ in r] for r in _hits(res)] == [[i for i, _ in r] for r in _hits(whole)]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_predictions_folder_equals_the_file(lib_and_folder, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    smi, folder, qfile = lib_and_folder
    base = ["--model", tiny_ckpt, "--queries", qfile, "--no-progress", "--threads", 1]
    out = {}
    for name, lib in (("file", smi), ("folder", folder)):
        code, res, cap = _run("predictions", capsys, "--library", lib, "--out", tmp_path / f"{name}.csv",
                              "--cache-dir", tmp_path / "cache", *base)
        assert code == 0 and res["molecules"] == 12 and res["invalid"] == 2, cap.err
        rows = _read_csv(tmp_path / f"{name}.csv")
        out[name] = (rows[0], np.array(rows[1:], dtype=np.float64),
                     (tmp_path / f"{name}_ids.txt").read_text().splitlines())
        code, res, cap = _run("predictions", capsys, "--library", lib, "--out", tmp_path / f"{name}-top.csv",
                              "--cache-dir", tmp_path / "cache", "--top-k", 4, *base)
        assert code == 0 and res["top_k"] == 4 and "the top 4 of 12 molecules" in cap.out, cap.err
    (head, mat, ids), (head2, mat2, ids2) = out["file"], out["folder"]
    assert head == head2 and ids == ids2 and len(ids) == 12
    np.testing.assert_allclose(mat, mat2, atol=1e-5)
    for name in ("file", "folder"):
        rows = _read_csv(tmp_path / f"{name}-top.csv")
        assert rows[0] == ["query", "rank", "id", "score"] and len(rows) == 1 + 4 * len(QUERIES)
        for q in range(len(QUERIES)):
            best = np.lexsort((np.arange(12), -mat[q, 1:]))[:4]  # ties in library order
            mine = [r for r in rows[1:] if r[0] == str(q)]
            assert [r[1] for r in mine] == ["1", "2", "3", "4"]
            assert [r[2] for r in mine] == [ids[j] for j in best]
            np.testing.assert_allclose([float(r[3]) for r in mine], mat[q, 1:][best], atol=1e-5)


def _error_line(code, captured) -> str:
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_folder_errors(lib_and_folder, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    from molret.models.checkpoint import read_checkpoint, save_checkpoint
    _, folder, qfile = lib_and_folder
    ck = read_checkpoint(tiny_ckpt)
    ck["model_state"] = {k: (v + 0.5 if k.startswith("graph_proj") else v) for k, v in ck["model_state"].items()}
    other = tmp_path / "other.pt"
    save_checkpoint(other, ck)
    lib = ["--library", folder]
    assert "another model" in _error_line(*_run("search", capsys, "--model", other, *lib, "q")[::2])
    assert "another model" in _error_line(*_run("predictions", capsys, "--model", other, *lib, "--queries", qfile,
                                                "--out", tmp_path / "x.csv")[::2])
    for flag in (["--names", "opsin"], ["--hubness", "isoftmax"]):
        line = _error_line(*_run("search", capsys, "--model", tiny_ckpt, *lib, *flag, "q")[::2])
        assert line.startswith(f"error: {flag[0]} {flag[1]} does not apply to the shard folder")
    assert "--top-k" in _error_line(*_run("predictions", capsys, "--model", tiny_ckpt, *lib, "--queries", qfile,
                                          "--top-k", 0, "--out", tmp_path / "y.csv")[::2])
    assert "nprobe" in _error_line(*_run("search", capsys, "--model", tiny_ckpt, *lib, "--nprobe", 0, "q")[::2])
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.csv").exists()
