"""The ensemble as one model (molret.models.embedder): its file, exact by construction, and every entry point
that loads a checkpoint loading it too.

Two tiny random models (no training) share one text encoder and differ in their graph encoder and width; the
SMILES library and queries are those of tests/test_shards.py.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from conftest import run_script  # noqa: E402
from test_shards import QUERIES, SMI  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402

LIB_SMILES = [line.split()[0] for line in SMI.splitlines()[1:] if line.split()[1] not in ("bad_ring", "bad_valence")]


def _tiny_checkpoint(path, conv: str, embed_dim: int, seed: int, hf_model, tok, data_dir: str = ""):
    import torch
    from molret.chem.smiles_graph import smiles_to_graph
    from molret.config import ModelConfig, RunConfig
    from molret.data.vocab import Vocab
    from molret.models.checkpoint import make_checkpoint, save_checkpoint
    from molret.models.encoders import build_model
    from molret.models.text_models import tokenizer_to_files
    idents = sorted({int(i) for s in LIB_SMILES for i in smiles_to_graph(s)[1]})
    ids = np.array(idents, dtype=np.uint64)
    vectors = np.random.default_rng(seed).standard_normal((len(ids) + 1, 8)).astype(np.float32)
    mcfg = ModelConfig(conv=conv, num_layers=2, hidden_dim=16, vocab_size=len(ids) + 1, substructure_dim=8,
                       text_model="tiny", text_pooling="mean", max_length=32, embed_dim=embed_dim, proj_hidden=0,
                       dropout=0.0)
    torch.manual_seed(seed)
    model = build_model(mcfg, vectors, hf_model=hf_model).eval()
    cfg = RunConfig(model=mcfg)
    cfg.train.data_dir = data_dir
    save_checkpoint(path, make_checkpoint(model, cfg, Vocab(ids, vectors), tokenizer_to_files(tok)))
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_text_model, one_thread_module):
    """(checkpoint a: GCN 16-d, checkpoint b: MLP 8-d, their model file with weights 3:1)."""
    from transformers import AutoModel, AutoTokenizer
    from molret.models.embedder import Fusion, save_ensemble
    root = tmp_path_factory.mktemp("embedder")
    hf, tok = AutoModel.from_pretrained(tiny_text_model), AutoTokenizer.from_pretrained(tiny_text_model)
    a = _tiny_checkpoint(root / "a.pt", "gcn", 16, 0, hf, tok)
    b = _tiny_checkpoint(root / "b.pt", "mlp", 8, 1, hf, tok)
    model = root / "ensemble.pt"
    names = {"exact": 3.0, "subject": 0.2, "parent": 0.0, "form": 0.25}
    save_ensemble(model, [a, b], [3.0, 1.0], Fusion(names, "sinkhorn", 0.02))
    return a, b, model


def test_cosines_are_the_weighted_member_cosines(pair):
    from molret.api.retriever import MolRetriever
    a, b, model = pair
    ens, ra, rb = (MolRetriever.from_checkpoint(p, "cpu") for p in (model, a, b))
    assert ens.is_ensemble and [round(m.weight, 6) for m in ens.embedder.members] == [0.75, 0.25]
    assert ens.embedder.dim == 24
    t, g = ens.encode_text(QUERIES), ens.encode_graphs(LIB_SMILES)
    assert t.shape == (3, 24) and g.shape == (len(LIB_SMILES), 24)
    # unit norm: each member's part has norm sqrt(w_i)
    assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    expected = 0.75 * ra.similarity(ra.encode_text(QUERIES), ra.encode_graphs(LIB_SMILES)) + \
        0.25 * rb.similarity(rb.encode_text(QUERIES), rb.encode_graphs(LIB_SMILES))
    np.testing.assert_allclose(ens.similarity(t, g), expected, atol=1e-5)
    # the members share one text encoder in memory (stored once, loaded once)
    first, second = ens.embedder.members
    assert first.model.text_encoder.hf_model is second.model.text_encoder.hf_model


def test_a_checkpoint_is_the_one_member_case_bit_for_bit(pair):
    from molret.models.checkpoint import load_model
    from molret.models.embedder import Embedder, load_embedder
    a, _, _ = pair
    loaded = load_embedder(a, "cpu")
    direct = Embedder.single(*load_model(a, "cpu"))
    assert not loaded.ensemble and loaded.dim == 16
    assert np.array_equal(loaded.encode_texts(QUERIES), direct.encode_texts(QUERIES))
    from molret.api.retriever import MolRetriever
    r = MolRetriever.from_checkpoint(a, "cpu")
    assert r.cfg.model.conv == "gcn" and r.model is r.embedder.members[0].model
    with pytest.raises(MolretError, match="ensemble of 2"):
        MolRetriever.from_checkpoint(pair[2], "cpu").cfg   # noqa: B018 - an ensemble has no one config


def test_the_file_stores_shared_tensors_once_and_drops_zero_weights(pair, tmp_path):
    from molret.models.embedder import load_embedder, save_ensemble
    a, b, model = pair
    text_bytes = sum(t.numel() * t.element_size() for k, t in __import__("torch").load(
        a, weights_only=True)["model_state"].items() if k.startswith("text_encoder."))
    # the two checkpoints each hold the text encoder; the model file holds it once
    assert model.stat().st_size < a.stat().st_size + b.stat().st_size - 0.9 * text_bytes
    info = save_ensemble(tmp_path / "one.pt", [a, b], [1.0, 0.0])
    assert info["members"] == 1
    one = load_embedder(tmp_path / "one.pt", "cpu")
    assert one.ensemble and len(one.members) == 1 and one.members[0].weight == 1.0
    with pytest.raises(MolretError, match=">= 0"):
        save_ensemble(tmp_path / "bad.pt", [a, b], [1.0, -1.0])


def test_a_crafted_model_file_is_refused_unopened(pair, tmp_path, capsys):
    """A model file is read with the safe loader: a pickled object is one error line, and never runs."""
    import torch
    crafted = tmp_path / "crafted.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("PWNED",))
    torch.save({"format": "molret-ensemble", "version": 1, "members": [], "x": Evil()}, crafted)
    lib = tmp_path / "lib.smi"
    lib.write_text("CCO a\n")
    code, _, out = run_script("search", capsys, "q", "--model", crafted, "--library", lib)
    assert code == 2 and "PWNED" not in out.out + out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "beyond tensors and plain data" in lines[0]
    # a model file whose weight is not a number
    content = torch.load(pair[2], weights_only=True)
    content["members"][0]["weight"] = "heavy"
    torch.save(content, tmp_path / "badweight.pt")
    with pytest.raises(MolretError, match="weight must be a number"):
        from molret.models.embedder import load_embedder
        load_embedder(tmp_path / "badweight.pt")
    assert zipfile.is_zipfile(crafted)   # torch's zip format, as a checkpoint


def test_search_and_shard_folder_with_the_model_file(pair, tmp_path, capsys):
    from molret.api.retriever import MolRetriever
    _, _, model = pair
    smi = tmp_path / "mols.smi"
    smi.write_text(SMI)
    ens = MolRetriever.from_checkpoint(model, "cpu")
    s = ens.similarity(ens.encode_text(QUERIES), ens.encode_graphs(smi))
    ids = [line.split()[1] for line in SMI.splitlines()[1:] if line.split()[1] not in ("bad_ring", "bad_valence")]
    hits = ens.search(QUERIES, smi, k=3, names=False)
    assert [[h.id for h in q] for q in hits] == [[ids[j] for j in np.argsort(-row, kind="stable")[:3]] for row in s]
    # the shard folder of embed_library.py with the model file: the same exact top-3 through search
    for i in range(2):
        assert run_script("embed_library", capsys, "--model", model, "--library", smi, "--out", tmp_path / "f",
                          "--shard", f"{i}/2", "--dtype", "float32", "--no-progress")[0] == 0
    code, res, _ = run_script("search", capsys, *QUERIES, "--model", model, "--library", tmp_path / "f", "-k", "3",
                              "--no-progress")
    assert code == 0 and [[h.id for h in q] for q in res["results"]] == [[h.id for h in q] for q in hits]
    # another model's folder is refused
    code, _, out = run_script("search", capsys, "q", "--model", pair[0], "--library", tmp_path / "f")
    assert code == 2 and "another model" in out.err


def test_a_model_file_with_name_weights_searches_with_names_by_default(pair, tmp_path):
    from molret.api.retriever import MolRetriever, SearchOptions
    a, _, model = pair
    smi = tmp_path / "mols.smi"
    smi.write_text(SMI)
    ens = MolRetriever.from_checkpoint(model, "cpu")
    assert ens.default_names and not MolRetriever.from_checkpoint(a, "cpu").default_names
    engine = ens.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c")))
    if engine.names is None:
        pytest.skip("no name source here (OPSIN, chemicals)")
    assert engine.names[1] == {"exact": 3.0, "subject": 0.2, "parent": 0.0, "form": 0.25}   # the file's weights
    off = ens.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c"), names=False))
    assert off.names is None
    # "ethanol" names a library molecule: with the names it comes first
    hits = engine.search(["Ethanol is a primary alcohol."], 1)[0]
    assert hits[0].id == "ethanol"


def test_fit_projection_by_hand():
    from molret.models.embedder import fit_projection
    rows = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    p = fit_projection(rows, 1)                       # the direction of largest energy: the second axis
    np.testing.assert_allclose(np.abs(p[:, 0]), [0.0, 1.0, 0.0], atol=1e-7)
    p2 = fit_projection(rows, 2)
    np.testing.assert_allclose(np.abs(p2), [[0, 1], [1, 0], [0, 0]], atol=1e-7)
    with pytest.raises(MolretError, match="wider"):
        fit_projection(rows, 3)


def test_a_projection_onto_the_span_keeps_the_cosines(pair, tmp_path):
    """A reduction is opt-in and measured; onto the span of the rows it fits, it is exact: 3 queries and 12
    molecules span at most 15 of the 24 dimensions."""
    from molret.library.caches import embedder_key
    from molret.models.embedder import Fusion, fit_projection, load_embedder, save_ensemble
    a, b, model = pair
    ens = load_embedder(model, "cpu")
    t, g = ens.encode_texts(QUERIES), ens.encode_store(_smiles_store(LIB_SMILES))
    projection = fit_projection(np.concatenate([t, g]), 15)
    save_ensemble(tmp_path / "reduced.pt", [a, b], [3.0, 1.0], Fusion(), projection=projection)
    small = load_embedder(tmp_path / "reduced.pt", "cpu")
    assert small.dim == 15 and small.full_dim == 24 and "reduced from 24" in small.describe()
    ts, gs = small.encode_texts(QUERIES), small.encode_store(_smiles_store(LIB_SMILES))
    np.testing.assert_allclose(ts @ gs.T, t @ g.T, atol=1e-5)
    assert embedder_key(small) != embedder_key(ens)   # its library caches and shard folders are its own


def _smiles_store(smiles):
    from molret.api.retriever import smiles_store
    return smiles_store(smiles)


def test_a_model_file_with_a_hubness_bank_corrects_hubness_by_default(pair, tmp_path):
    """The bank's embeddings travel in the file: the inverted softmax over them is the file's default on a
    library file (and equals enable_hubness over the same texts), off with hubness=False."""
    from molret.api.retriever import MolRetriever, SearchOptions
    from molret.models.embedder import Fusion, save_ensemble
    a, b, _ = pair
    bank_texts = ["an alcohol", "an aromatic acid", "a chlorinated alkane", "an amine"]
    ens = MolRetriever.from_checkpoint(pair[2], "cpu")
    save_ensemble(tmp_path / "hub.pt", [a, b], [3.0, 1.0],
                  Fusion(hubness_bank=ens.encode_text(bank_texts), hubness_temperature=0.1))
    hub = MolRetriever.from_checkpoint(tmp_path / "hub.pt", "cpu")
    smi = tmp_path / "mols.smi"
    smi.write_text(SMI)
    on = hub.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c")))
    off = hub.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c"), hubness=False))
    by_texts = ens.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c"), hubness_bank=bank_texts,
                                                  hubness_temperature=0.1, names=False))
    assert on.hub_offsets is not None and off.hub_offsets is None
    np.testing.assert_allclose(on.hub_offsets, by_texts.hub_offsets, atol=1e-6)
    # a plain checkpoint has no bank to default to
    with pytest.raises(MolretError, match="carries none"):
        MolRetriever.from_checkpoint(a, "cpu").open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c"),
                                                                              hubness=True))
