"""Tests for sharded library embedding (molret.library.shards, embed_library.py) and the ANN indexes (molret.search.ann).

A tiny random model (no training) is saved as a checkpoint once per module;
its substructure vocabulary covers the hand-written SMILES library, so the
molecules get distinct embeddings.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")
pytest.importorskip("faiss")

from molret.library import shards as SH  # noqa: E402
from molret.library.shard_folder import open_shard_folder  # noqa: E402
from molret.search.ann import AnnIndex, IndexParams, open_index  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402

# 12 valid molecules, 2 invalid rows (record numbers 4 and 9).
SMI = """\
# hand-written
CCO ethanol
c1ccccc1 benzene
CC(=O)O acetic_acid
c1ccc(cc1)C(=O)O benzoic_acid
C1CC bad_ring
CCN(CC)CC triethylamine
OC(=O)CCC(=O)O succinic_acid
c1ccncc1 pyridine
ClC(Cl)Cl chloroform
C(C)(C)(C)(C)C bad_valence
CC(C)O isopropanol
CCCCCCCC octane
NCC(=O)O glycine
c1ccc2ccccc2c1 naphthalene
"""
INVALID_ROWS = {4, 9}
QUERIES = ["an aromatic carboxylic acid", "a small alcohol", "a nitrogen heterocycle"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny_text_model, one_thread_module):
    """A checkpoint of a randomly initialised tiny model (GCN, 16-d embeddings)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from molret.models.checkpoint import make_checkpoint, save_checkpoint
    from molret.config import ModelConfig, RunConfig
    from molret.data.vocab import Vocab
    from molret.models.encoders import build_model
    from molret.chem.smiles_graph import smiles_to_graph
    from molret.models.text_models import tokenizer_to_files

    idents = set()
    for line in SMI.splitlines()[1:]:
        try:
            idents.update(int(i) for i in smiles_to_graph(line.split()[0])[1])
        except MolretError:
            pass
    ids = np.array(sorted(idents), dtype=np.uint64)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(ids) + 1, 8)).astype(np.float32)
    mcfg = ModelConfig(conv="gcn", num_layers=2, hidden_dim=16, vocab_size=len(ids) + 1, substructure_dim=8,
                       text_model=tiny_text_model, text_pooling="mean", max_length=32, embed_dim=16, proj_hidden=0,
                       dropout=0.0)
    torch.manual_seed(0)
    model = build_model(mcfg, vectors, hf_model=AutoModel.from_pretrained(tiny_text_model)).eval()
    cfg = RunConfig(model=mcfg)
    cfg.train.eval_batch_size = 5   # several batches per shard
    vocab = Vocab(ids, vectors)
    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    path = tmp_path_factory.mktemp("shardmodel") / "tiny.pt"
    save_checkpoint(path, make_checkpoint(model, cfg, vocab, tokenizer_to_files(tok)))
    return path


@pytest.fixture(scope="module")
def loaded(tiny_ckpt):
    from molret.models.checkpoint import load_model
    return load_model(tiny_ckpt, "cpu")


@pytest.fixture
def smi(tmp_path):
    p = tmp_path / "mols.smi"
    p.write_text(SMI)
    return p


def _embed(lib, out, i, n, loaded, **kw):
    from molret.models.embedder import Embedder
    return SH.embed_shard(lib, out, i, n, Embedder.single(*loaded), **kw)


def _whole(lib, loaded, tmp_path):
    import torch
    from molret.library.caches import library_embeddings
    from molret.models.embedder import Embedder
    le = library_embeddings(lib, Embedder.single(*loaded, torch.device("cpu")), cache_dir=tmp_path / "wholecache")
    return le


def _query_emb(loaded):
    from molret.models.embedder import Embedder
    return Embedder.single(*loaded).encode_texts(QUERIES)


# ------------------------------------------------------------ shards = whole

@pytest.mark.parametrize("n", [1, 2, 3])
def test_shards_equal_the_whole_library(n, smi, loaded, tmp_path):
    from molret.search.index import SearchIndex
    out = tmp_path / f"out{n}"
    results = [_embed(smi, out, i, n, loaded, dtype="float32", chunk_size=3) for i in range(n)]
    assert sum(r.count for r in results) == 12 and sum(r.invalid for r in results) == 2
    for i, r in enumerate(results):  # invalid rows counted in the shard that owns them
        assert r.invalid == sum(1 for x in INVALID_ROWS if x % n == i)
    lib = open_shard_folder(out)
    whole = _whole(smi, loaded, tmp_path)
    order = np.argsort(lib.rows, kind="stable")  # shard order -> library order
    assert [lib.ids[int(j)] for j in order] == whole.library.ids
    assert [lib.smiles[int(j)] for j in order] == whole.library.smiles
    np.testing.assert_allclose(np.asarray(lib.embeddings)[order], whole.embeddings, atol=1e-5)
    assert lib.meta["invalid"] == 2 and len(lib) == 12
    assert isinstance(lib.embeddings.parts[0], np.memmap)
    q = _query_emb(loaded)
    ref_s, ref_i = SearchIndex(whole.embeddings, "numpy").search(q, 5)
    s, i = AnnIndex(lib.embeddings, "exact", order=lib.rows).search(q, 5)
    assert [[lib.ids[int(j)] for j in row] for row in i] == [[whole.library.ids[j] for j in row] for row in ref_i]
    np.testing.assert_allclose(s, ref_s, atol=1e-5)
    # the memmap scan (no float32 copy) gives the same; ranks as molret.search.index.SearchIndex.rank
    big = AnnIndex(lib.embeddings, "exact", order=lib.rows)
    big._flat = None
    np.testing.assert_array_equal(big.search(q, 5)[1], i)
    ref = SearchIndex(whole.embeddings, "numpy")
    for j in (0, 7, 11):
        r, sc, ties = big.rank(q[1], int(order[j]))
        assert (r, ties) == ref.rank(q[1], j)[::2] and sc == pytest.approx(ref.rank(q[1], j)[1], abs=1e-5)


def test_float16_storage_and_graph_library(tmp_path, loaded):
    from molret.chem.smiles_graph import smiles_to_graph, graph_to_text
    raw = tmp_path / "raw"
    raw.mkdir()
    for k, line in enumerate(SMI.splitlines()[1:]):
        try:
            g = smiles_to_graph(line.split()[0])
        except MolretError:
            (raw / f"{100 + k}.graph").write_text("edgelist:\nnot a graph\n")
            continue
        (raw / f"{100 + k}.graph").write_text(graph_to_text(*g))
    out = tmp_path / "g"
    for i in range(2):
        _embed(raw, out, i, 2, loaded)
    lib = open_shard_folder(out)
    assert lib.embeddings.dtype == np.float16 and lib.meta["invalid"] == 2 and len(lib) == 12
    assert sorted(lib.ids[j] for j in range(len(lib))) == sorted(
        str(100 + k) for k in range(14) if k not in INVALID_ROWS)
    norms = np.linalg.norm(np.asarray(lib.embeddings, dtype=np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


# ---------------------------------------------------- resume and killed shards

def test_resume_skips_finished_shards(smi, loaded, tmp_path):
    out = tmp_path / "r"
    first = _embed(smi, out, 0, 2, loaded)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    calls = []
    import molret.models.encoding as T
    real = T.embed_graphs
    T.embed_graphs = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        again = _embed(smi, out, 0, 2, loaded)
        assert again.skipped and again.count == first.count and not calls
        _embed(smi, out, 1, 2, loaded)
        assert calls  # the other shard is computed
    finally:
        T.embed_graphs = real
    assert all(p.stat().st_mtime_ns == stamp[p.name] for p in out.iterdir() if p.name in stamp)


def test_killed_shard_leaves_nothing_half_written(smi, loaded, tmp_path, monkeypatch):
    import molret.models.encoding as T
    out = tmp_path / "k"
    _embed(smi, out, 0, 2, loaded)
    before = sorted(p.name for p in out.iterdir())
    seen = []

    def dying(*a, **k):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt  # killed mid-shard, after one chunk was written
        return real(*a, **k)
    real = T.embed_graphs
    monkeypatch.setattr(T, "embed_graphs", dying)
    with pytest.raises(KeyboardInterrupt):
        _embed(smi, out, 1, 2, loaded, chunk_size=2)
    assert sorted(p.name for p in out.iterdir()) == before  # no shard-00001 file, no temporary left
    with pytest.raises(MolretError, match="1 of 2 shards not finished"):
        open_shard_folder(out)
    monkeypatch.setattr(T, "embed_graphs", real)
    assert not _embed(smi, out, 1, 2, loaded).skipped
    assert len(open_shard_folder(out)) == 12


# --------------------------------------------------------------- the indexes

def test_index_kinds_agree_with_exact(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32))
    x = (centres[rng.integers(0, 50, 5000)] + 0.6 * rng.standard_normal((5000, 32))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = (x[rng.integers(0, 5000, 100)] + 0.3 * rng.standard_normal((100, 32))).astype(np.float32)
    _, truth = AnnIndex(x, "exact").search(q, 10)
    params = IndexParams(nlist=64, nprobe=16, pq_m=8, rerank=10, ef_search=64)
    for kind in ("ivf", "ivfpq", "hnsw"):
        ann = open_index(tmp_path, x, kind, params, signature="s")
        _, got = ann.search(q, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
        assert recall >= 0.9, (kind, recall)
        again = open_index(tmp_path, x, kind, params, signature="s", build=False)  # stored, not rebuilt
        assert again.stored_path == ann.stored_path
        np.testing.assert_array_equal(again.search(q, 10)[1], got)
    assert len(list(tmp_path.glob("index-*.faiss"))) == 3 and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(MolretError, match="no stored"):
        open_index(tmp_path, x, "ivf", params, signature="other", build=False)


def test_auto_kind_thresholds():
    from molret.search.ann import choose_kind
    assert choose_kind(99_999) == "exact"
    assert choose_kind(100_000) == "hnsw"
    assert choose_kind(1_000_000) == choose_kind(10_000_000) == "ivfpq"
    with pytest.raises(MolretError):
        choose_kind(10, "annoy")


# ------------------------------------------------------------------- the CLI

def _cli(capsys, *args):
    """embed_library.py in this process: (exit code, stderr)."""
    import embed_library
    capsys.readouterr()
    try:
        embed_library.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def _one_error_line(code, captured) -> str:
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("spec", ["3/2", "x", "0/0", "1/", "-1/2"])
def test_bad_shard_specs(spec, smi, tiny_ckpt, tmp_path, capsys):
    line = _one_error_line(*_cli(capsys, "--model", tiny_ckpt, "--library", smi, "--out", tmp_path / "o",
                                 f"--shard={spec}"))
    assert line.startswith("error: --shard")
    assert not (tmp_path / "o").exists()


def test_cli_embed_index_search_and_mixed_models(smi, tiny_ckpt, loaded, tmp_path, capsys):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, str(REPO / "embed_library.py"), "--model", str(tiny_ckpt), "--library",
                           str(smi), "--out", str(out), "--shard", "0/2", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "shard 0/2: 6 molecules embedded" in proc.stderr, proc.stderr
    code, cap = _cli(capsys, "--model", tiny_ckpt, "--library", smi, "--out", out, "--shard", "1/2")
    assert code == 0 and "1 invalid skipped" in cap.err
    code, cap = _cli(capsys, "--model", tiny_ckpt, "--library", smi, "--out", out, "--shard", "1/2")
    assert code == 0 and "nothing recomputed" in cap.err
    code, cap = _cli(capsys, "search", "--out", out, "--model", tiny_ckpt, "-k", "3", QUERIES[0])
    assert code == 0, cap.err
    assert len(cap.out.splitlines()) == 5 and "(exact)" in cap.err
    _one_error_line(*_cli(capsys, "search", "--out", out, "--model", tiny_ckpt, "-k", "0", "q"))
    _one_error_line(*_cli(capsys, "index", "--out", out, "--index", "ivf", "--nprobe", "0"))
    # another model's shards into the same folder: one error line, exit 2
    from molret.models.checkpoint import load_model, read_checkpoint, save_checkpoint
    ck = read_checkpoint(tiny_ckpt)
    ck["model_state"] = {k: (v + 0.5 if k.startswith("graph_proj") else v) for k, v in ck["model_state"].items()}
    other = tmp_path / "other.pt"
    save_checkpoint(other, ck)
    for args in (("--model", other, "--library", smi, "--out", out, "--shard", "0/2"),
                 ("--model", tiny_ckpt, "--library", smi, "--out", out, "--shard", "0/3"),
                 ("search", "--out", out, "--model", other, "q")):
        line = _one_error_line(*_cli(capsys, *args))
        assert "another" in line
    # a folder that already mixes two models (e.g. shards copied together by hand)
    mixed = tmp_path / "mixed"
    _embed(smi, mixed, 0, 2, loaded)
    from molret.models.embedder import Embedder
    SH.embed_shard(smi, tmp_path / "mixed2", 1, 2, Embedder.single(*load_model(other, "cpu")))
    for p in (tmp_path / "mixed2").glob("shard-*"):
        p.rename(mixed / p.name)
    assert "mixes shards" in _one_error_line(*_cli(capsys, "index", "--out", mixed))
    (mixed / SH.FOLDER_FILE).unlink()
    assert "mixes shards" in _one_error_line(*_cli(capsys, "index", "--out", mixed))


# ------------------------------------------------------------- line offsets

def test_line_offsets_are_mapped_and_folders_without_them_still_open(smi, loaded, tmp_path):
    from molret.library.shard_folder import ShardedVector
    out = tmp_path / "off"
    for i in range(2):
        _embed(smi, out, i, 2, loaded)
    lib = open_shard_folder(out)
    ids, smiles = [lib.ids[i] for i in range(len(lib))], [lib.smiles[i] for i in range(len(lib))]
    assert all(t.mapped and isinstance(t._starts, np.memmap) for t in lib.ids.tables + lib.smiles.tables)
    assert isinstance(lib.rows, ShardedVector) and isinstance(lib.rows.parts[0], np.memmap)
    assert lib.rows[7] == np.asarray(lib.rows)[7] and list(lib.rows.take([11, 0])) == list(np.asarray(lib.rows)[[11, 0]])
    # opening reads no text: text files of the same size without a single newline still open
    name = SH.shard_name(0, 2)
    text = (out / f"{name}.ids.txt").read_bytes()
    (out / f"{name}.ids.txt").write_bytes(text.replace(b"\n", b" "))
    assert len(open_shard_folder(out)) == 12
    (out / f"{name}.ids.txt").write_bytes(text)
    # a folder written before the offsets files: the text is scanned, the same lines come back
    for p in out.glob("*.offsets.npy"):
        p.unlink()
    old = open_shard_folder(out)
    assert not any(t.mapped for t in old.ids.tables)
    assert [old.ids[i] for i in range(len(old))] == ids and [old.smiles[i] for i in range(len(old))] == smiles
    # offsets that do not fit their text: one clear error
    np.save(out / f"{name}.ids.offsets.npy", np.arange(3, dtype=np.int64))
    with pytest.raises(MolretError, match="does not fit its text file"):
        open_shard_folder(out)
